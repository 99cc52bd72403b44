// The shard set written by crop_shards and read by the trainer and evaluate.
// Format (see docs/shard_format.md): <dir>/manifest.json (written last),
// <dir>/train/shard-00000.h5 ..., <dir>/test/shard-00000.h5 ...; in each
// shard (version 3) every source image once, /images/000000 (uint8 H x W x 3,
// RGB), and one group per record, /records/000000, with its `target`
// (float32 h/8 x w/8) and attributes `source`, `box` (x, y, w, h), `count`,
// `density_sum`, `image` and `at` (where its pixels lie in that image).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "common/base/fs.h"

namespace csr {

namespace fs = std::filesystem;

// Version 3 (2026-12): each source image is stored once and its records are
// boxes in it (the nine overlapping training crops cost 2.25x the image in
// version 2, which stored every record's pixels); records carry the factor
// the image was rescaled by. Version 2: string attributes are fixed-length
// (version 1 used variable-length ones, read through HDF5's global heap).
// The reader reads versions 2 and 3; crop_shards writes version 3.
constexpr int kShardFormatVersion = 3;
constexpr int kOldestReadableShardFormat = 2;

struct ShardRecord {
  cv::Mat image;             // CV_8UC3, RGB, h x w
  cv::Mat target;            // CV_32F, h/8 x w/8 (floor for test images)
  std::string source;        // source image file name, e.g. "IMG_12.jpg"
  std::array<int, 4> box{};  // x, y, w, h in source pixels
  int64_t count = 0;         // annotations inside the box
  double density_sum = 0.0;  // full-resolution density summed over the box
  int crop = -1;             // 0..3 the quarters (TL, TR, BL, BR), 4.. random crops, -1 the whole image
  // Stored pixels per source pixel (x, y): the image the box is in was the
  // source rescaled by these factors (--min-side, --max-side); {1, 1} when it
  // was not. A source coordinate is a stored one divided by its factor.
  std::array<double, 2> scale{1.0, 1.0};
};

// Size and labels of a record, known without reading its pixels.
struct RecordInfo {
  int width = 0;
  int height = 0;
  std::string source;
  int64_t count = 0;
  double density_sum = 0.0;
  int crop = -1;                          // as ShardRecord::crop
  std::array<double, 2> scale{1.0, 1.0};  // as ShardRecord::scale
};

// Read-only random access to a finished shard set. Thread-safe: Read() may be
// called from several threads at once.
class ShardSet {
 public:
  // Opens <dir>/manifest.json, checks that every shard it lists exists with
  // the listed size, and loads each shard's /index (so Info() reads nothing).
  // Throws csr::Error naming the folder/file: no manifest ("incomplete shard
  // set"), an unsupported format version, a missing, truncated or corrupt shard.
  explicit ShardSet(const fs::path& dir);
  ~ShardSet();
  ShardSet(ShardSet&&) noexcept;
  ShardSet& operator=(ShardSet&&) noexcept;

  const fs::path& dir() const;
  const nlohmann::json& manifest() const;

  // `split` is "train" or "test". Record indices run over the split's shards
  // in manifest order. An unknown split or an index out of range throws.
  int64_t size(const std::string& split) const;
  // From the index loaded at open: no file access.
  RecordInfo Info(const std::string& split, int64_t index) const;
  // Reads one record and checks its crc32 attribute; a mismatch throws
  // csr::Error naming the shard and the record. Two chunk reads: the record's
  // image (version 3: the whole source image, cut to the box) and its target.
  ShardRecord Read(const std::string& split, int64_t index) const;

  // Recomputes each shard's checksum against the manifest; throws on mismatch.
  void Verify() const;

  // The splits the manifest lists: "train", then "test", then any others by name.
  std::vector<std::string> splits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Writing (crop_shards). Records are encoded in parallel (EncodeRecord: the
// checksum and optional deflate compression, no HDF5 calls) and written by one
// ShardWriter per split from a single thread.

// Crc32 (zlib's, the same value as Python's zlib.crc32) is in common/base/fs.h.
// CRC-32 of a whole file's bytes; throws csr::Error naming the file.
uint32_t FileCrc32(const fs::path& path);

// One record ready to be written: its labels and its target's bytes,
// possibly deflate-compressed. Its pixels are a box of its EncodedImage.
struct EncodedRecord {
  std::array<int, 4> box{};  // the labels, as ShardRecord's
  int64_t count = 0;
  double density_sum = 0.0;
  int crop = -1;
  std::array<double, 2> scale{1.0, 1.0};
  std::array<int, 2> at{};               // x, y of the record's pixels (box[2] x box[3]) inside its image
  int target_rows = 0, target_cols = 0;  // the target is rows x cols float32
  std::vector<uint8_t> target_bytes;     // zlib stream when target_deflated, else raw
  bool target_deflated = false;
  uint32_t crc32 = 0;  // of the record's raw pixels (C order) followed by its raw target bytes
};

// A source image ready to be written, with the records cut from it.
struct EncodedImage {
  std::string source;
  int rows = 0, cols = 0;      // the image is rows x cols x 3 uint8
  std::vector<uint8_t> bytes;  // zlib stream when deflated, else raw
  bool deflated = false;
  std::vector<EncodedRecord> records;
};

// Encodes `image` (CV_8UC3, RGB) once and the records cut from it: each
// record's `image` must be a view into `image` (image(box), say), which gives
// its position; all records share `image`'s source name. `deflate` is the
// zlib level 0..9 (0 = store raw); a compressed form that is not smaller than
// the raw bytes is dropped. Thread-safe.
EncodedImage EncodeImage(const cv::Mat& image, const std::vector<ShardRecord>& records, int deflate);
// A record on its own: its pixels are stored as an image of their own.
EncodedImage EncodeRecord(const ShardRecord& record, int deflate);

// One finished shard file, as listed in the manifest.
struct ShardFileInfo {
  std::string file;  // relative to the shard set folder, e.g. "train/shard-00000.h5"
  int64_t records = 0;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;  // of the whole file
};

// Writes one split's shards: <dir>/<split>/shard-00000.h5, ... Each shard is
// written under a temporary name; once it holds `records_per_shard` records
// (or at Finish) it is closed, and a background task computes its checksum,
// flushes it to disk and renames it into place, so the disk works while the
// next shard is being filled (at most two shards wait for the disk). The
// destructor removes an unfinished temporary. Not thread-safe: call from one
// thread at a time.
class ShardWriter {
 public:
  ShardWriter(fs::path dir, std::string split, int64_t records_per_shard, int deflate);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Adds an image and its records; all of them go to the same shard, which is
  // closed once it holds `records_per_shard` records or more. Throws
  // csr::Error naming the shard file on a write failure (disk full),
  // including a failure of an earlier shard's background flush.
  void Add(const EncodedImage& image);
  // Completes the last shard, waits for the disk; returns every shard, in order.
  std::vector<ShardFileInfo> Finish();
  // For a failed run: waits for background work, then deletes every shard
  // this writer completed and its unfinished temporary. Never throws.
  void Abandon() noexcept;
  int64_t records() const { return total_; }

 private:
  struct Open;
  void WriteImage(const EncodedImage& image);
  void Close();
  // Moves finished background results into done_, rethrowing their errors;
  // waits for all of them when `all`, else only while more than `keep` are pending.
  void Collect(bool all, size_t keep = 0);

  fs::path dir_;
  std::string split_;
  int64_t per_shard_;
  int deflate_;
  int64_t total_ = 0;
  int64_t shards_ = 0;  // shards started
  std::vector<ShardFileInfo> done_;
  std::deque<std::future<ShardFileInfo>> pending_;
  std::unique_ptr<Open> open_;
};

// The manifest's file name inside a shard set folder.
constexpr const char* kManifestName = "manifest.json";
// The manifest's "format" marker (each shard file's own root attribute is
// the same marker); a manifest or shard with another marker is refused.
constexpr const char* kShardSetFormat = "csrnet-shards";

// Whether `name` (a file name inside a split folder) is a finished shard's:
// "shard-NNNNN.h5".
bool IsShardFileName(const std::string& name);

// A split's entry in the manifest as the reader expects it:
// {"records": N, "bytes": B, "shards": [{"file", "records", "bytes", "crc32"}, ...]}.
nlohmann::json SplitManifest(const std::vector<ShardFileInfo>& shards);

// Writes a whole shard set, the one way every producer does (crop_shards,
// the test fixtures): one ShardWriter per split, then manifest.json last and
// atomically, with the format marker and version, every split's entry and
// the totals ({"records", "shards", "bytes"}), merged with what the producer
// adds (provenance, per-split notes). A folder without the manifest is an
// incomplete set; a writer destroyed before Finish removes the shards it
// wrote. Not thread-safe, like ShardWriter.
class ShardSetWriter {
 public:
  // `records_per_shard` >= 1 and `deflate` 0..9 are the caller's to check
  // (they are its options); out-of-range values are a bug here.
  ShardSetWriter(fs::path dir, const std::vector<std::string>& splits, int64_t records_per_shard, int deflate);
  ~ShardSetWriter();
  ShardSetWriter(const ShardSetWriter&) = delete;
  ShardSetWriter& operator=(const ShardSetWriter&) = delete;

  // The writer of one of the splits given to the constructor.
  ShardWriter& split(const std::string& name);
  // Finishes every split and writes the manifest: `extra` is merged into it
  // (objects merged key by key, so "totals" may carry more counts), and
  // `split_extra[name]` into that split's entry. Returns the manifest, and
  // each split's shards through shards().
  nlohmann::json Finish(const nlohmann::json& extra = nlohmann::json::object(),
                        const nlohmann::json& split_extra = nlohmann::json::object());
  // The shards of a split, after Finish.
  const std::vector<ShardFileInfo>& shards(const std::string& name) const;
  // For a failed run: deletes every shard written so far. Never throws.
  void Abandon() noexcept;

 private:
  size_t IndexOf(const std::string& name) const;  // of a split given to the constructor

  fs::path dir_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<ShardWriter>> writers_;
  std::vector<std::vector<ShardFileInfo>> infos_;
  bool finished_ = false;
};

}  // namespace csr
