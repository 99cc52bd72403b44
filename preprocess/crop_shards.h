// crop_shards: the CSRNet paper's nine crops per training image (four
// quarters + random ones, a quarter of the image each) and the whole test
// images, with their 1/8-resolution targets, written once into HDF5 shards
// (common/shards/shards.h, docs/shard_format.md) by a oneTBB pipeline:
// serial reader (density maps, annotations) -> parallel decode, crop, target,
// checksum, compression -> serial in-order writer.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/io/datasets.h"
#include "common/io/resize.h"
#include "preprocess/density.h"

namespace csr {

// The training target: exact 8 x 8 block sums of the density, or the
// original's bicubic resize times 64 (whose count drifts from the crop's).
enum class TargetRule { kSum8, kCubic };
// "sum8" | "cubic": the --target spelling and the manifest's `target`.
const char* Name(TargetRule target);

// Where crop_shards takes each image's density from.
enum class DensitySource {
  kAuto,         // gt_gen's map where it exists, else made in memory from the annotation
  kMaps,         // gt_gen's maps only (an image without one is an error)
  kAnnotations,  // always made in memory from the annotations (never written)
};

struct CropShardsOptions {
  DatasetKind dataset = DatasetKind::kShanghaiTech;  // layout under --root (docs/datasets.md)
  std::string root = "ShanghaiTech";                 // dataset root holding part_A_final/ or part_A/
  std::string part = "A";                            // ShanghaiTech: A or B
  std::string eval_split;  // the split stored as the set's test split; empty = test, val for nwpu
  std::string val_list;    // UCF-QNRF: Train/ images forming the val split
  int fold = 0;            // UCF_CC_50: the cross-validation fold 1..5
  DensitySource density_source = DensitySource::kAuto;
  DensityChoice density;                  // the settings of densities made in memory (as gt_gen's)
  SizeChoice size;                        // rescaling of images and points before the density; auto per dataset
  std::string out = "shards";             // shard set folder (with --export: where the PNGs go)
  int64_t seed = 2018;                    // random crop positions follow from it (and each image's name)
  int threads = 0;                        // worker threads; 0 = all cores
  int random_crops = 5;                   // random crops per training image, besides the four quarters
  TargetRule target = TargetRule::kSum8;  // training target: sum8 (exact 8x8 block sums) | cubic (the original)
  int records_per_shard = 256;            // records per shard file
  int compress = 0;                       // deflate level 0..9 for pixels and targets (0 = none, fastest)
  bool overwrite = false;                 // replace a different shard set (or other files' folder) at --out
  bool quiet = false;                     // no progress bar or summary, errors only
  std::string inspect;                    // shard set folder: print its statistics instead of building
  bool verify = false;                    // with --inspect: recompute every shard's checksum
  int64_t export_record = -1;             // with --inspect: write this record's image and target heatmap as PNG
  std::string split = "train";            // the split --export takes its record from

  // Throws csr::UsageError naming the option, its value and the rule. The
  // options of --inspect and --export are checked where they are used.
  void Check() const;
  // The settings of densities made in memory: `density` with auto resolved
  // for the dataset (and part), as gt_gen resolves them.
  DensityOptions ResolveDensity() const;
  // The size limits: `size` with auto resolved for the dataset.
  SizeLimits ResolveSize() const;
};

// ------------------------------------------------------------------ geometry

struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;
  cv::Rect rect() const { return {x, y, w, h}; }
  bool operator==(const CropBox& o) const { return x == o.x && y == o.y && w == o.w && h == o.h; }
};

// Half the image in each direction, rounded down to a multiple of 8:
// w = floor(floor(W/2)/8)*8, h likewise (x = y = 0).
CropBox CropSize(int width, int height);

// The seed of one image's random crops: a hash of the run's seed, the split
// and the image's file name, so positions do not depend on thread scheduling
// or on which other images are present.
uint64_t ImageSeed(int64_t seed, const std::string& split, const std::string& image_name);

// The training crops of a width x height image: the four quarters (top-left,
// top-right, bottom-left, bottom-right) then `random_crops` boxes placed
// uniformly over the valid range. Empty when the crop would be under 8 px.
std::vector<CropBox> TrainCrops(int width, int height, int random_crops, uint64_t image_seed);

// ------------------------------------------------------------------ targets

// The exact target is SumBlocks8 (common/io/density_map.h).
// The original CSRNet target: cv::resize(density(box), (w/8, h/8), INTER_CUBIC) * 64,
// CV_32F (the resize runs in the density's own depth, as cv2 does).
cv::Mat TargetCubic(const cv::Mat& density, const cv::Rect& box);
// Sum of the density over `box`, in double.
double BoxSum(const cv::Mat& density, const cv::Rect& box);
// Annotations (duplicates included) whose pixel lies inside `box`.
int64_t CountInBox(const HeadPixels& heads, const cv::Rect& box);

// ------------------------------------------------------------------ the tool

struct CropShardsReport {
  int64_t images = 0;  // source images read
  int64_t train_records = 0;
  int64_t test_records = 0;
  int64_t skipped_images = 0;  // too small to crop
  int64_t shards = 0;
  uint64_t bytes = 0;  // shard bytes written
  double seconds = 0.0;
  int threads = 0;
};

// Builds the shard set at options.out. Throws csr::Error naming the file for
// bad input or a failed write; then no manifest exists at options.out.
CropShardsReport BuildShards(const CropShardsOptions& options);

// Prints the manifest's totals and per-split statistics of the set at `dir`.
void InspectShards(const std::string& dir, bool verify, std::ostream& out);

// Writes record `index` of `split` as <out_dir>/<split>-<index>-image.png,
// -target.png (a JET heatmap of the target, scaled to the image) and
// -overlay.png; returns the paths written.
std::vector<std::string> ExportRecord(const std::string& dir, const std::string& split, int64_t index,
                                      const std::string& out_dir);

// The command-line tool; returns the exit code.
int RunCropShards(int argc, const char* const* argv);

}  // namespace csr
