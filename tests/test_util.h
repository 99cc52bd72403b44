// Shared helpers for the test executables.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

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

}  // namespace csr::test
