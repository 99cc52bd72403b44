#include "common/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <opencv2/imgproc.hpp>

#include "common/base/error.h"

namespace csr {
namespace {

// Both maps as single-channel double of equal size (sums in double keep
// GAME exact to ~1e-12 on maps of any size).
void CheckPair(const cv::Mat& a, const cv::Mat& b) {
  CSR_CHECK(a.channels() == 1 && b.channels() == 1, "metrics", "density maps must be single-channel");
  CSR_CHECK(a.size() == b.size(), "metrics",
            StrCat("density maps differ in size: ", a.cols, "x", a.rows, " vs ", b.cols, "x", b.rows));
}

cv::Mat AsDouble(const cv::Mat& m) {
  cv::Mat d;
  m.convertTo(d, CV_64F);
  return d;
}

// Both maps divided by the truth's peak (the prediction's when the truth is
// all zero; 1 when both are).
void Scaled(const cv::Mat& predicted, const cv::Mat& truth, cv::Mat* p, cv::Mat* t) {
  double lo = 0, peak = 0;
  cv::minMaxLoc(truth, &lo, &peak);
  if (peak <= 0) cv::minMaxLoc(predicted, &lo, &peak);
  if (peak <= 0) peak = 1.0;
  predicted.convertTo(*p, CV_64F, 1.0 / peak);
  truth.convertTo(*t, CV_64F, 1.0 / peak);
}

}  // namespace

double Game(const cv::Mat& predicted, const cv::Mat& truth, int level) {
  CheckPair(predicted, truth);
  CSR_CHECK(level >= 0 && level < 16, "metrics", "GAME level out of range");
  const cv::Mat p = AsDouble(predicted), t = AsDouble(truth);
  const int n = 1 << level;
  const int64_t h = p.rows, w = p.cols;
  double total = 0;
  for (int i = 0; i < n; ++i) {
    const int r0 = static_cast<int>(i * h / n), r1 = static_cast<int>((i + 1) * h / n);
    for (int j = 0; j < n; ++j) {
      const int c0 = static_cast<int>(j * w / n), c1 = static_cast<int>((j + 1) * w / n);
      if (r1 <= r0 || c1 <= c0) continue;  // more cells than rows or columns: empty cell
      const cv::Rect cell(c0, r0, c1 - c0, r1 - r0);
      total += std::abs(cv::sum(p(cell))[0] - cv::sum(t(cell))[0]);
    }
  }
  return total;
}

double Psnr(const cv::Mat& predicted, const cv::Mat& truth) {
  CheckPair(predicted, truth);
  if (predicted.empty()) return kPsnrCap;
  cv::Mat p, t;
  Scaled(predicted, truth, &p, &t);
  cv::Mat diff = p - t;
  const double mse = diff.dot(diff) / static_cast<double>(diff.total());
  if (mse <= 0) return kPsnrCap;
  return std::min(kPsnrCap, 10.0 * std::log10(1.0 / mse));
}

double Ssim(const cv::Mat& predicted, const cv::Mat& truth) {
  CheckPair(predicted, truth);
  if (predicted.empty()) return 1.0;
  cv::Mat x, y;
  Scaled(predicted, truth, &x, &y);
  // An odd window no larger than the map: a window wider than the map would
  // only see reflected copies of it.
  int win = std::min({11, x.rows, x.cols});
  if (win % 2 == 0) --win;
  const double sigma = 1.5;
  auto blur = [&](const cv::Mat& m) {
    cv::Mat out;
    cv::GaussianBlur(m, out, cv::Size(win, win), sigma, sigma, cv::BORDER_REFLECT_101);
    return out;
  };
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;  // (K * L)^2 with L = 1
  const cv::Mat mx = blur(x), my = blur(y);
  const cv::Mat sxx = blur(x.mul(x)) - mx.mul(mx);
  const cv::Mat syy = blur(y.mul(y)) - my.mul(my);
  const cv::Mat sxy = blur(x.mul(y)) - mx.mul(my);
  const cv::Mat num = (2 * mx.mul(my) + c1).mul(2 * sxy + c2);
  const cv::Mat den = (mx.mul(mx) + my.mul(my) + c1).mul(sxx + syy + c2);
  cv::Mat map;
  cv::divide(num, den, map);
  return cv::mean(map)[0];
}

ImageMetrics MeasureImage(const cv::Mat& predicted, const cv::Mat& truth_map, double truth) {
  CheckPair(predicted, truth_map);
  ImageMetrics m;
  m.truth = truth;
  m.predicted = cv::sum(AsDouble(predicted))[0];
  m.density_sum = cv::sum(AsDouble(truth_map))[0];
  for (int l = 0; l < kGameLevels; ++l) m.game[l] = Game(predicted, truth_map, l);
  m.psnr = Psnr(predicted, truth_map);
  m.ssim = Ssim(predicted, truth_map);
  return m;
}

double CountErrors::mae() const { return images_ > 0 ? abs_sum_ / static_cast<double>(images_) : 0.0; }
double CountErrors::rmse() const { return images_ > 0 ? std::sqrt(sq_sum_ / static_cast<double>(images_)) : 0.0; }
double CountErrors::mean_error() const { return images_ > 0 ? sum_ / static_cast<double>(images_) : 0.0; }

MetricsSummary Summarize(const std::vector<ImageMetrics>& images) {
  MetricsSummary s;
  s.images = static_cast<int64_t>(images.size());
  if (images.empty()) return s;
  CountErrors counts;
  for (const ImageMetrics& m : images) {
    counts.Add(m.predicted, m.truth);
    if (m.truth > 0) {
      s.nae += std::abs(m.error()) / m.truth;
      ++s.nae_images;
    }
    for (int l = 0; l < kGameLevels; ++l) s.game[l] += m.game[l];
    if (std::isfinite(m.psnr) && std::isfinite(m.ssim)) {
      s.psnr += m.psnr;
      s.ssim += m.ssim;
      ++s.map_images;
    }
  }
  const double n = static_cast<double>(images.size());
  s.mae = counts.mae();
  s.rmse = counts.rmse();
  s.mean_error = counts.mean_error();
  if (s.nae_images > 0) s.nae /= static_cast<double>(s.nae_images);
  for (double& g : s.game) g /= n;
  const double maps = static_cast<double>(s.map_images);
  s.psnr = s.map_images > 0 ? s.psnr / maps : std::numeric_limits<double>::quiet_NaN();
  s.ssim = s.map_images > 0 ? s.ssim / maps : std::numeric_limits<double>::quiet_NaN();
  return s;
}

std::vector<GroupSummary> SummarizeGroups(const std::vector<ImageMetrics>& images,
                                          const std::vector<std::map<std::string, std::string>>& tags) {
  std::map<std::pair<std::string, std::string>, std::vector<ImageMetrics>> groups;
  for (size_t i = 0; i < images.size() && i < tags.size(); ++i) {
    for (const auto& [attribute, value] : tags[i]) groups[{attribute, value}].push_back(images[i]);
  }
  std::vector<GroupSummary> out;
  for (const auto& [key, members] : groups) out.push_back({key.first, key.second, Summarize(members)});
  return out;
}

std::string JhuCountRange(double count) {
  if (count <= 50) return "0-50 (low)";
  if (count <= 500) return "51-500 (medium)";
  return ">500 (high)";
}

}  // namespace csr
