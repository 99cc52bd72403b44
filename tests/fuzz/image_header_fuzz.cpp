// Fuzz target: ReadImageSize's JPEG/PNG header and completeness checks.
#include "common/io/image_io.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csr::fuzz;
  // The reader picks the parser by content, but try both extensions.
  for (const char* name : {"in.jpg", "in.png"}) {
    const fs::path path = Scratch() / name;
    WriteBytes(path, data, size);
    Expect([&] {
      const csr::ImageSize s = csr::ReadImageSize(path.string());
      if (s.width <= 0 || s.height <= 0) std::abort();  // accepted sizes are real
    });
  }
  return 0;
}
