// The ground-truth density map file that gt_gen writes beside each
// annotation (IMG_n.h5, dataset `density`, float32 H x W), the one
// reduction every reader of it needs (sums over 8 x 8 blocks, the exact
// target at the network's 1/8 resolution), and the predicted 1/8 map that
// predict writes.
#pragma once

#include <cstdint>
#include <string>

#include <opencv2/core.hpp>

#include "common/io/h5.h"

namespace csr {

// The file's marker and layout version (attributes `format` and
// `format_version`). Version 1 is today's layout; the maps of the original
// Python preprocessing carry neither attribute and are read as version 1.
inline constexpr const char* kDensityFormat = "csrnet-density";
inline constexpr int64_t kDensityFormatVersion = 1;

// Writes the marker and version into `f` (under the caller's h5::Lock).
void WriteDensityFormat(hid_t file);
// Throws csr::Error naming `path` when `f` carries another marker, or a
// version this build cannot read (written by a newer csrnet-cpp). A file
// without the attributes passes. Under the caller's h5::Lock.
void CheckDensityFormat(hid_t file, const std::string& path);

// Each cell the sum of its 8 x 8 block of `density` inside `box`:
// floor(h/8) x floor(w/8) cells, CV_32F, accumulated in double in one fixed
// order (so crop_shards' targets and evaluate's maps are bit-identical).
// `covered`, if given, receives the double sum of the cells. `density` is
// one channel of CV_32F or CV_64F and `box` lies inside it (CSR_ASSERT).
cv::Mat SumBlocks8(const cv::Mat& density, const cv::Rect& box, double* covered = nullptr);
// The whole map: the border rows and columns past a multiple of 8 are dropped.
cv::Mat SumBlocks8(const cv::Mat& density);

// predict's output for one image: dataset `density` (the network's 1/8 map,
// float32) with attributes count, scale (8), image (its path), width and
// height (its size in pixels). Atomic: a temporary renamed into place.
void WritePredictedDensity(const std::string& path, const cv::Mat& density, const std::string& image, int width,
                           int height);

}  // namespace csr
