// Fuzz target: the text and JSON annotation readers (JHU-Crowd++ gt and
// labels, NWPU-Crowd json, custom point files, split lists). The first byte
// picks the reader, the rest is the file.
#include "common/io/point_files.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csr::fuzz;
  if (size == 0) return 0;
  const int reader = data[0] % 7;
  static const char* const kNames[] = {"gt.txt", "image_labels.txt", "0001.json", "a.json", "a.csv",
                                       "a.txt",  "train.txt"};
  const fs::path path = Scratch() / kNames[reader];
  WriteBytes(path, data + 1, size - 1);
  Expect([&] {
    size_t n = 0;
    switch (reader) {
      case 0:
        n = csr::ReadJhuHeads(path.string()).size();
        break;
      case 1:
        n = csr::ReadJhuLabels(path.string()).size();
        break;
      case 2:
        n = csr::ReadNwpuJson(path.string()).size();
        break;
      case 6:
        n = csr::ReadListFile(path.string()).size();
        break;
      default:
        n = csr::ReadPointFile(path.string()).size();
    }
    // Every entry takes at least two bytes of the file ("1\n", "[1,2]").
    if (n > size) std::abort();
  });
  return 0;
}
