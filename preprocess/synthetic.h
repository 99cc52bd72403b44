// A synthetic ShanghaiTech-like dataset: crowd-looking JPEGs with head
// annotations in the real .mat format and folder layout. It is the demo's
// default dataset and the tests' main fixture, so it reproduces the traits of
// the real data that exercise edge cases (perspective, clusters, grayscale
// images, duplicate head pixels, points a fraction of a pixel from the right
// edge) and is fully determined by its seed.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/io/datasets.h"

namespace csr {

namespace fs = std::filesystem;

struct SyntheticOptions {
  std::string out;                  // dataset root; the part folder is created inside it
  std::string part = "A";           // "A" (varied sizes, some grayscale) or "B" (1024x768 RGB)
  int train_images = 12;            // images in train_data
  int test_images = 6;              // images in test_data
  int64_t seed = 1;                 // everything (sizes, points, pixels) follows from it
  int min_size = 0;                 // smallest image side in px; 0 = part default (A: 256, B: 1024x768 fixed)
  int max_size = 0;                 // largest image side in px; 0 = part default (A: 512)
  int min_heads = 20;               // fewest heads in an image
  int max_heads = 300;              // most heads in an image (drawn log-uniformly in between)
  int jpeg_quality = 90;            // JPEG quality 1..100
  std::string layout = "official";  // official: part_A_final/.../ground_truth; mirrored: part_A/.../ground-truth
  bool overwrite = false;           // replace an existing synthetic part folder (never a non-synthetic one)
  // The layout to write (docs/datasets.md): shanghaitech (part_X_final/ under --out), or qnrf, ucf50, jhu,
  // nwpu, points (the dataset root is --out itself). jhu and nwpu get train, val (--test-images) and test
  // (--test-images) splits and one image without heads; ucf50 is grayscale and numbered 1..N.
  DatasetKind like = DatasetKind::kShanghaiTech;
  // Image sizes and head counts drawn to match the published statistics of
  // `like` (and `part`): mean width and height, mean and largest count, the
  // share of images without anyone (docs/synthetic.md). Replaces min/max_size
  // and min/max_heads; the largest count is given to train image 1.
  bool real_stats = false;

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};

// One generated image and its annotation.
struct SyntheticImage {
  std::string split;    // "train", "val" or "test"
  fs::path image;       // .../images/IMG_n.jpg
  fs::path annotation;  // .../ground_truth/GT_IMG_n.mat (ground-truth in the mirrored layout); empty: no labels
  int width = 0;
  int height = 0;
  bool gray = false;                          // written as a single-channel JPEG
  std::vector<std::array<double, 2>> points;  // the heads (x, y) exactly as written to the annotation
};

struct SyntheticSummary {
  fs::path part_dir;  // e.g. <out>/part_A_final
  int images = 0;     // images written (train + test)
  int train_images = 0;
  int test_images = 0;
  int64_t heads = 0;                  // annotated points over all images
  std::vector<SyntheticImage> items;  // train IMG_1.., then test IMG_1..
};

// Writes the dataset described by `opts`. Throws csr::UsageError for bad
// options and csr::Error when the part folder already holds files (unless
// `overwrite` and the folder was made by this generator) or cannot be written.
SyntheticSummary GenerateSynthetic(const SyntheticOptions& opts);

// `count` head positions (x, y) with 0 < x < width, 0 < y < height: a few
// Gaussian clusters plus a uniform share, denser toward the top (perspective),
// with ~1% pairs that truncate to the same pixel and, for count >= 5, one point
// within 0.3 px of the right edge. Deterministic in `seed`.
std::vector<std::array<double, 2>> SyntheticHeads(int width, int height, int count, uint64_t seed);

// A crowd-looking 8-bit BGR image (CV_8UC3) with a head (and shoulders) drawn
// at each point, smaller toward the top. Deterministic in `seed`.
cv::Mat RenderCrowd(int width, int height, const std::vector<std::array<double, 2>>& points, uint64_t seed);

// The published statistics real_stats draws from.
struct DatasetStats {
  double width = 0, height = 0;  // mean image size, pixels
  double mean_count = 0;         // mean heads per image
  int min_count = 0, max_count = 0;
  double empty_share = 0;  // images without heads
};
DatasetStats PublishedStats(DatasetKind kind, const std::string& part);

// The make_synthetic tool: parses options, generates, prints one summary line.
int RunMakeSynthetic(int argc, const char* const* argv);

}  // namespace csr
