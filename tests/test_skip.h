// Skips that ctest reports as skips. A test case that needs something the
// machine may lack (../shared/data, Debian's Python packages, chromium, a
// pseudo-terminal, root for a tmpfs) is tagged `* doctest::test_suite("optional")`
// and starts with CSR_SKIP_UNLESS. tests/CMakeLists.txt runs a file's optional
// cases as their own ctest entry (<target>_optional) whose exit code 77 ctest
// shows as "Skipped", so a missing dependency never reads as a pass.
//
// CSR_REQUIRE (comma-separated needs, or "all") turns the listed skips into
// failures: CI sets it for what its machine must have.
#pragma once

#include <string>

namespace csr::test {

// Needs, as named in CSR_REQUIRE.
inline constexpr const char* kNeedShared = "shared";      // ../shared/data
inline constexpr const char* kNeedPython = "python";      // Debian's python3-{torch,h5py,scipy,opencv,onnx}
inline constexpr const char* kNeedChromium = "chromium";  // headless chromium
inline constexpr const char* kNeedPty = "pty";            // a pseudo-terminal
inline constexpr const char* kNeedRoot = "root";          // root (tmpfs mounts, read-only checks)
inline constexpr const char* kNeedGpu = "gpu";            // a CUDA LibTorch and a visible GPU (*_gpu_test.cpp)

// Records that the running test case cannot run for lack of `need`. Returns
// true (the caller returns); when `need` is required by CSR_REQUIRE it also
// fails the test case.
bool Skip(const char* need, const std::string& reason);

// Whether any test case of this process skipped.
bool AnySkipped();

}  // namespace csr::test

#define CSR_SKIP_UNLESS(cond, need, reason)            \
  do {                                                 \
    if (!(cond)) {                                     \
      if (::csr::test::Skip((need), (reason))) return; \
    }                                                  \
  } while (0)
