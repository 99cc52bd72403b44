// A small ShanghaiTech-layout dataset for the crop_shards tests: noise-and-
// gradient JPEGs of chosen sizes (optionally grayscale), random annotations
// (with a duplicate pixel and a point 0.2 px from the right edge) and density
// maps written by the gt_gen library.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "common/io/mat_io.h"
#include "preprocess/gt_gen.h"

namespace csr::test {

struct FixtureImage {
  std::string split;  // "train" or "test"
  int width = 0;
  int height = 0;
  int heads = 20;
  bool gray = false;
};

inline std::vector<std::array<double, 2>> FixturePoints(int w, int h, int n, cv::RNG& rng) {
  std::vector<std::array<double, 2>> pts;
  for (int i = 0; i < n; ++i) pts.push_back({rng.uniform(0.0, double(w)), rng.uniform(0.0, double(h))});
  if (n >= 3) {
    pts.push_back({std::floor(pts[0][0]) + 0.7, std::floor(pts[0][1]) + 0.1});  // same pixel as point 0
    pts.push_back({w - 0.2, h / 2.0});                                          // just inside the right edge
  }
  return pts;
}

// Writes <root>/part_A_final/{train,test}_data/{images,ground_truth}/ and runs
// gt_gen on it (unless `densities` is false). Images are numbered per split.
inline void MakeFixture(const std::filesystem::path& root, const std::vector<FixtureImage>& images,
                        bool densities = true, uint64_t seed = 7) {
  cv::RNG rng(seed);
  int number[2] = {0, 0};
  for (const auto& im : images) {
    const int k = im.split == "train" ? 0 : 1;
    const auto dir = root / "part_A_final" / (im.split + "_data");
    MakeDirs(dir / "images");
    MakeDirs(dir / "ground_truth");
    const std::string stem = "IMG_" + std::to_string(++number[k]);
    cv::Mat img(im.height, im.width, im.gray ? CV_8UC1 : CV_8UC3);
    rng.fill(img, cv::RNG::UNIFORM, 0, 256);
    cv::Mat ramp(im.height, im.width, img.type());
    for (int y = 0; y < im.height; ++y) ramp.row(y).setTo(cv::Scalar::all(255.0 * y / im.height));
    cv::addWeighted(img, 0.3, ramp, 0.7, 0.0, img);
    CSR_CHECK(cv::imwrite((dir / "images" / (stem + ".jpg")).string(), img), stem, "cannot write fixture image");
    WriteAnnotation((dir / "ground_truth" / ("GT_" + stem + ".mat")).string(),
                    FixturePoints(im.width, im.height, im.heads, rng));
  }
  if (densities) {
    GtGenOptions o;
    o.root = root.string();
    o.part = "A";
    o.quiet = true;
    GenerateGroundTruth(o);
  }
}

}  // namespace csr::test
