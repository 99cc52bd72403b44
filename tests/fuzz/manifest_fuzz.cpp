// Fuzz target: a shard set's manifest.json (JSON parsing, field types and
// ranges, paths, totals) over a valid shard.
#include <fstream>

#include "tests/fuzz/shard_set_fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csr::fuzz;
  const ShardSetFixture& f = Fixture();
  WriteBytes(f.dir / csr::kManifestName, data, size);
  Expect([&] { ReadWholeSet(f.dir); });
  return 0;
}
