// Crowd-counting metrics: count errors over a test set (MAE, RMSE, NAE),
// the grid average mean absolute error GAME(L), and PSNR/SSIM between a
// predicted and a ground-truth density map at the network's 1/8 resolution.
// Definitions (and why they were chosen) are in docs/evaluate.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace csr {

// Highest GAME level reported: L = 0..3 (1, 4, 16, 64 cells).
constexpr int kGameLevels = 4;

// GAME(L) of one image: the map is split into 2^L x 2^L cells (row and column
// boundaries at floor(i * size / 2^L)), and the absolute differences of the
// cells' sums are added up. GAME(0) is the absolute error of the map sums.
// Both maps must be single-channel float (CV_32F or CV_64F) of equal size.
double Game(const cv::Mat& predicted, const cv::Mat& truth, int level);

// PSNR in dB between two density maps, both divided by the ground truth's
// peak (its maximum; the prediction's when the truth is all zero) so the
// value does not depend on the map's scale: 10 log10(1 / MSE). Identical maps
// (MSE = 0) give kPsnrCap.
constexpr double kPsnrCap = 100.0;
double Psnr(const cv::Mat& predicted, const cv::Mat& truth);

// Mean SSIM (Wang et al. 2004: Gaussian window 11 x 11, sigma 1.5, K1 0.01,
// K2 0.03) on the maps scaled as for Psnr (dynamic range 1). The window
// shrinks to the map's smaller side on maps under 11 cells; borders are
// reflected. Two all-zero maps give 1.
double Ssim(const cv::Mat& predicted, const cv::Mat& truth);

// The measures of one image.
struct ImageMetrics {
  double truth = 0;                        // annotation count
  double predicted = 0;                    // predicted count (sum of the predicted map)
  double density_sum = 0;                  // ground-truth density sum (the 1/8 map's sum)
  std::array<double, kGameLevels> game{};  // GAME(0..3) against the ground-truth map
  double psnr = 0;
  double ssim = 0;
  double error() const { return predicted - truth; }
};

// Fills every field from the predicted and ground-truth 1/8 maps; `truth` is
// the annotation count (MAE/RMSE/NAE use it; GAME/PSNR/SSIM use the map).
// The maps must have the same size (csr::Error otherwise).
ImageMetrics MeasureImage(const cv::Mat& predicted, const cv::Mat& truth_map, double truth);

// Count errors accumulated image by image: MAE and RMSE (the papers'
// "MSE") of predicted - truth. Used by Summarize; the trainer's validation
// (train/validation.h) keeps the same sums in the same order, so that ranks
// can add them up, and reports the same arithmetic.
class CountErrors {
 public:
  void Add(double predicted, double truth) {
    const double e = predicted - truth;
    abs_sum_ += e < 0 ? -e : e;
    sq_sum_ += e * e;
    sum_ += e;
    ++images_;
  }
  int64_t images() const { return images_; }
  double mae() const;         // 0 with no images
  double rmse() const;        // 0 with no images
  double mean_error() const;  // the bias; 0 with no images

 private:
  double abs_sum_ = 0, sq_sum_ = 0, sum_ = 0;
  int64_t images_ = 0;
};

// Averages over a test set.
struct MetricsSummary {
  int64_t images = 0;
  double mae = 0;                          // mean |predicted - truth|
  double rmse = 0;                         // sqrt(mean (predicted - truth)^2): the papers' "MSE"
  double nae = 0;                          // mean |predicted - truth| / truth over images with truth > 0
  int64_t nae_images = 0;                  // images counted in NAE (those with truth > 0)
  double mean_error = 0;                   // mean (predicted - truth): the bias
  std::array<double, kGameLevels> game{};  // mean GAME(L)
  double psnr = 0;                         // mean PSNR (dB) over the images with one; NaN when none has
  double ssim = 0;                         // mean SSIM, likewise
  int64_t map_images = 0;                  // images with a PSNR and SSIM (a ground-truth density map)
};
// An image whose ground truth is its points only (no density map: see
// docs/evaluate.md) has NaN PSNR and SSIM; the means leave it out.
MetricsSummary Summarize(const std::vector<ImageMetrics>& images);

// One group of a benchmark's breakdown: the images whose `attribute` (e.g.
// NWPU-Crowd's "scene level") has `value`.
struct GroupSummary {
  std::string attribute, value;
  MetricsSummary summary;
};
// Groups the images by each attribute of their tags (tags[i] belongs to
// images[i]; an image without an attribute is in none of its groups).
// Attributes and values come in name order.
std::vector<GroupSummary> SummarizeGroups(const std::vector<ImageMetrics>& images,
                                          const std::vector<std::map<std::string, std::string>>& tags);
// JHU-Crowd++'s count ranges by the true count: "0-50 (low)", "51-500
// (medium)", ">500 (high)" (they sort in this order).
std::string JhuCountRange(double count);

}  // namespace csr
