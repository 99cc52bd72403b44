// Shared helpers for the test executables.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace csr::test {

namespace fs = std::filesystem;

// A fresh temporary folder, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("csrnet-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// ../shared/data (real samples and reference vectors); empty when absent.
inline fs::path SharedData() {
  fs::path p = CSR_SHARED_DATA_DIR;
  return fs::exists(p / "README.md") ? p : fs::path();
}

// The Python the interop tests run and compare against: $CSR_TEST_PYTHON
// when set (the torch wheel's virtual environment, for a build against that
// LibTorch: scripts/build.sh --libtorch pip), else Debian's /usr/bin/python3.
inline std::string Python() {
  const char* p = std::getenv("CSR_TEST_PYTHON");
  return p != nullptr && *p != '\0' ? std::string(p) : std::string("/usr/bin/python3");
}

// Path of a built tool in <build>/bin.
inline std::string Tool(const std::string& name) { return std::string(CSR_BIN_DIR) + "/" + name; }

// Runs a shell command, returns its exit status (stdout/stderr to `log` if given).
inline int Run(const std::string& cmd, const fs::path& log = {}) {
  std::string full = cmd;
  if (!log.empty()) full += " >" + log.string() + " 2>&1";
  const int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Runs a tool's entry point (csr::RunTrainer, RunEvaluate, RunPredict, ...:
// what the tool's main() calls) in this process, as `Run(Tool(name) + " " +
// args + " >out 2>err")` runs the tool: the exit code back, its stdout into
// `out` and its stderr into `err` (into `out` too when `err` is empty).
// Starting a LibTorch tool costs about 0.5 s (about twice that under ASan) of
// dynamic linking and LibTorch's static initialisation, most of a small case's
// time. `args` are split at spaces (test paths have none).
template <typename Entry>
int RunInProcess(Entry entry, const std::string& name, const std::string& args, const fs::path& out,
                 const fs::path& err = {}) {
  std::vector<std::string> words{name};
  std::istringstream in(args);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<const char*> argv;
  for (const std::string& w : words) argv.push_back(w.c_str());
  argv.push_back(nullptr);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out_fd < 0) return -1;
  const int err_fd = err.empty() ? dup(out_fd) : open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int saved_out = dup(1), saved_err = dup(2);
  const bool ready = err_fd >= 0 && saved_out >= 0 && saved_err >= 0;
  if (ready) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
  }
  for (int fd : {out_fd, err_fd}) {
    if (fd >= 0) close(fd);
  }
  // Puts stdout and stderr back, also if `entry` throws (RunTool catches
  // everything, so only a bug in the test would).
  struct Restore {
    int out, err;
    ~Restore() {
      std::cout.flush();
      std::cerr.flush();
      std::fflush(nullptr);
      if (out >= 0) {
        dup2(out, 1);
        close(out);
      }
      if (err >= 0) {
        dup2(err, 2);
        close(err);
      }
    }
  } restore{saved_out, saved_err};
  if (!ready) return -1;
  return entry(static_cast<int>(words.size()), argv.data());
}

}  // namespace csr::test
