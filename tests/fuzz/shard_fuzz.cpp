// Fuzz target: a shard file's bytes, under a manifest that matches their size
// and checksum (so the reader's own checks, not the manifest's, are tested).
#include "tests/fuzz/shard_set_fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace csr::fuzz;
  const ShardSetFixture& f = Fixture();
  const fs::path dir = Scratch() / "mutated";
  fs::create_directories(dir / "train");
  WriteBytes(dir / "train" / "shard-00000.h5", data, size);
  csr::ShardFileInfo info{"train/shard-00000.h5", 2, size, csr::Crc32(data, size)};
  nlohmann::json m = nlohmann::json::parse(f.manifest);
  m["splits"]["train"] = csr::SplitManifest({info});
  const std::string text = m.dump();
  WriteBytes(dir / csr::kManifestName, reinterpret_cast<const uint8_t*>(text.data()), text.size());
  Expect([&] { ReadWholeSet(dir); });
  return 0;
}
