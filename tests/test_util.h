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
