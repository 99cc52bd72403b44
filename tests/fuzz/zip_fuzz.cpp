// Fuzz target: the archive check run on every .pt before LibTorch reads it
// (common/io/zip_check.h): end-of-directory search, ZIP64 records, central and
// local headers, bounds, CRC-32s.
#include "common/io/zip_check.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  csr::fuzz::Expect([&] { csr::VerifyZipBytes(data, size, "fuzz.pt"); });
  return 0;
}
