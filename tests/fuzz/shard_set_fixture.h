// A small valid shard set for the shard fuzz targets: two records in one
// train shard, written once per process with the project's own writer.
#pragma once

#include <nlohmann/json.hpp>

#include "common/shards/shards.h"
#include "tests/fuzz/fuzz_util.h"

namespace csr::fuzz {

struct ShardSetFixture {
  fs::path dir;                // the set's folder
  std::string manifest;        // its valid manifest.json text
  std::vector<uint8_t> shard;  // the bytes of train/shard-00000.h5
};

inline ShardRecord FixtureRecord(int w, int h, int seed) {
  ShardRecord r;
  r.image.create(h, w, CV_8UC3);
  cv::RNG rng(static_cast<uint64_t>(seed));
  rng.fill(r.image, cv::RNG::UNIFORM, 0, 256);
  r.target.create(h / 8, w / 8, CV_32F);
  rng.fill(r.target, cv::RNG::UNIFORM, 0.0, 1.0);
  r.source = "IMG_" + std::to_string(seed) + ".jpg";
  r.box = {0, 0, w, h};
  r.count = seed;
  r.density_sum = seed + 0.5;
  r.crop = seed % 9;
  return r;
}

inline const ShardSetFixture& Fixture() {
  static const ShardSetFixture f = [] {
    ShardSetFixture out;
    out.dir = Scratch() / "set";
    fs::create_directories(out.dir);
    ShardSetWriter set(out.dir, {"train"}, 16, /*deflate=*/1);
    set.split("train").Add(EncodeRecord(FixtureRecord(32, 24, 1), 1));
    set.split("train").Add(EncodeRecord(FixtureRecord(16, 16, 2), 0));
    out.manifest = set.Finish().dump(1);
    std::ifstream in(out.dir / "train" / "shard-00000.h5", std::ios::binary);
    out.shard.assign(std::istreambuf_iterator<char>(in), {});
    return out;
  }();
  return f;
}

// Opens the set and reads every record it claims (at most a few), as the
// trainer and evaluate would.
inline void ReadWholeSet(const fs::path& dir) {
  const ShardSet set(dir);
  for (const std::string& split : set.splits()) {
    const int64_t n = std::min<int64_t>(set.size(split), 8);
    for (int64_t i = 0; i < n; ++i) {
      Expect([&] { set.Read(split, i); });
    }
  }
  set.Verify();
}

}  // namespace csr::fuzz
