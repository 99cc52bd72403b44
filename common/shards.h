// The shard set written by crop_shards and read by the trainer and evaluate.
// Format (see docs/shard_format.md): <dir>/manifest.json (written last),
// <dir>/train/shard-00000.h5 ..., <dir>/test/shard-00000.h5 ...; in each
// shard one group per record, /records/000000, with datasets `image`
// (uint8 h x w x 3, RGB) and `target` (float32 h/8 x w/8) and attributes
// `source`, `box` (x, y, w, h), `count`, `density_sum`.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace csr {

namespace fs = std::filesystem;

constexpr int kShardFormatVersion = 1;

struct ShardRecord {
  cv::Mat image;               // CV_8UC3, RGB, h x w
  cv::Mat target;              // CV_32F, h/8 x w/8 (floor for test images)
  std::string source;          // source image file name, e.g. "IMG_12.jpg"
  std::array<int, 4> box{};    // x, y, w, h in source pixels
  int64_t count = 0;           // annotations inside the box
  double density_sum = 0.0;    // full-resolution density summed over the box
};

// Size and labels of a record, known without reading its pixels.
struct RecordInfo {
  int width = 0;
  int height = 0;
  std::string source;
  int64_t count = 0;
  double density_sum = 0.0;
};

// Read-only random access to a finished shard set. Thread-safe: Read() may be
// called from several threads at once.
class ShardSet {
 public:
  // Opens <dir>/manifest.json and checks the shard files it lists exist.
  // Throws csr::Error naming the folder/file: no manifest ("incomplete shard
  // set"), an unsupported format version, a missing or corrupt shard.
  explicit ShardSet(const fs::path& dir);
  ~ShardSet();
  ShardSet(ShardSet&&) noexcept;
  ShardSet& operator=(ShardSet&&) noexcept;

  const fs::path& dir() const;
  const nlohmann::json& manifest() const;

  // `split` is "train" or "test". Record indices run over the split's shards
  // in manifest order.
  int64_t size(const std::string& split) const;
  RecordInfo Info(const std::string& split, int64_t index) const;
  ShardRecord Read(const std::string& split, int64_t index) const;

  // Recomputes each shard's checksum against the manifest; throws on mismatch.
  void Verify() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace csr
