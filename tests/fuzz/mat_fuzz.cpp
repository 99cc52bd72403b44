// Fuzz target: the .mat annotation readers (MATLAB 5 and v7.3): ShanghaiTech's
// image_info and the top-level annPoints of UCF-QNRF, UCF_CC_50 and NWPU-Crowd.
#include "common/io/mat_io.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csr::fuzz;
  const fs::path path = Scratch() / "GT_IMG_1.mat";
  WriteBytes(path, data, size);
  Expect([&] {
    const csr::Annotation a = csr::ReadAnnotation(path.string());
    // Values come back as stored (NaN checks are the caller's); the count of
    // points cannot exceed what the file's bytes can hold.
    if (a.points.size() > size) std::abort();
  });
  Expect([&] {
    if (csr::ReadPointsVariable(path.string(), "annPoints").size() > size) std::abort();
  });
  return 0;
}
