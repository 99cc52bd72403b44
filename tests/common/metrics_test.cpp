#include "common/eval/metrics.h"

#include <cmath>

#include <doctest/doctest.h>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"

namespace csr {
namespace {

cv::Mat M4(std::initializer_list<float> v) {
  cv::Mat m(4, 4, CV_32F);
  std::copy(v.begin(), v.end(), m.ptr<float>());
  return m;
}

// Predicted and true maps of the GAME example in docs/evaluate.md.
const cv::Mat kPred = M4({1, 0, 0, 0,  //
                          0, 0, 0, 2,  //
                          0, 0, 1, 0,  //
                          0, 0, 0, 0});
const cv::Mat kTruth = M4({0, 1, 0, 0,  //
                           0, 0, 0, 0,  //
                           0, 0, 0, 0,  //
                           1, 0, 0, 1});

TEST_CASE("GAME on a 4x4 map matches the hand-computed cell errors at every level") {
  // L0: |4 - 3| = 1.  L1 quadrants: TL 1-1, TR 2-0, BL 0-1, BR 1-1 -> 0+2+1+0 = 3.
  // L2 single cells: 1+1+2+1+1+1 = 7.  L3: 8x8 cells on 4x4, every non-empty cell is one cell -> 7.
  CHECK(Game(kPred, kTruth, 0) == doctest::Approx(1.0));
  CHECK(Game(kPred, kTruth, 1) == doctest::Approx(3.0));
  CHECK(Game(kPred, kTruth, 2) == doctest::Approx(7.0));
  CHECK(Game(kPred, kTruth, 3) == doctest::Approx(7.0));
}

TEST_CASE("GAME splits maps whose size is not a multiple of the grid at floor boundaries") {
  // 3 columns, 2 cells: columns [0,1) and [1,3).
  cv::Mat p = (cv::Mat_<float>(1, 3) << 1, 0, 0);
  cv::Mat t = (cv::Mat_<float>(1, 3) << 0, 0, 1);
  CHECK(Game(p, t, 0) == doctest::Approx(0.0));
  CHECK(Game(p, t, 1) == doctest::Approx(2.0));
}

TEST_CASE("GAME rejects maps of different sizes") {
  CHECK_THROWS_AS(Game(cv::Mat::zeros(4, 4, CV_32F), cv::Mat::zeros(4, 5, CV_32F), 1), Error);
}

TEST_CASE("MAE, RMSE and NAE over three images equal the hand-computed values") {
  std::vector<ImageMetrics> images(3);
  const double truth[] = {10, 20, 40}, pred[] = {12, 17, 40};
  for (int i = 0; i < 3; ++i) {
    images[i].truth = truth[i];
    images[i].predicted = pred[i];
  }
  const MetricsSummary s = Summarize(images);
  CHECK(s.images == 3);
  CHECK(s.mae == doctest::Approx(5.0 / 3.0));                 // (2 + 3 + 0) / 3
  CHECK(s.rmse == doctest::Approx(std::sqrt(13.0 / 3.0)));    // sqrt((4 + 9 + 0) / 3)
  CHECK(s.nae == doctest::Approx((0.2 + 0.15 + 0.0) / 3.0));  // 2/10, 3/20, 0/40
  CHECK(s.mean_error == doctest::Approx(-1.0 / 3.0));
  CHECK(s.nae_images == 3);
}

TEST_CASE("NAE leaves out images without people") {
  std::vector<ImageMetrics> images(2);
  images[0].truth = 10;
  images[0].predicted = 15;
  images[1].truth = 0;
  images[1].predicted = 1;
  const MetricsSummary s = Summarize(images);
  CHECK(s.nae == doctest::Approx(0.5));
  CHECK(s.nae_images == 1);
  CHECK(s.mae == doctest::Approx(3.0));
}

TEST_CASE("Summarize of no images is all zero") {
  const MetricsSummary s = Summarize({});
  CHECK(s.images == 0);
  CHECK(s.mae == 0.0);
}

TEST_CASE("PSNR scales both maps by the truth's peak") {
  // Truth peak 1 after scaling; MSE = (0.5^2) / 4 = 1/16 -> 10 log10(16).
  cv::Mat t = (cv::Mat_<float>(2, 2) << 0, 1, 0, 0);
  cv::Mat p = (cv::Mat_<float>(2, 2) << 0, 0.5f, 0, 0);
  CHECK(Psnr(p, t) == doctest::Approx(10.0 * std::log10(16.0)));
  // Multiplying both maps by a constant does not change it.
  CHECK(Psnr(p * 7, t * 7) == doctest::Approx(10.0 * std::log10(16.0)));
  CHECK(Psnr(t, t) == doctest::Approx(kPsnrCap));
}

TEST_CASE("SSIM is 1 for identical maps and the luminance term for constant maps") {
  cv::Mat a(20, 30, CV_32F);
  cv::randu(a, 0.0f, 1.0f);
  CHECK(Ssim(a, a) == doctest::Approx(1.0));
  // Constant maps have no variance, so SSIM = (2xy + C1) / (x^2 + y^2 + C1),
  // with x = 0.5, y = 1 after scaling by the truth's peak.
  const cv::Mat t(16, 16, CV_32F, cv::Scalar(2.0f)), p(16, 16, CV_32F, cv::Scalar(1.0f));
  const double c1 = 1e-4;
  CHECK(Ssim(p, t) == doctest::Approx((2 * 0.5 + c1) / (0.25 + 1 + c1)).epsilon(1e-6));
  CHECK(Ssim(cv::Mat::zeros(5, 5, CV_32F), cv::Mat::zeros(5, 5, CV_32F)) == doctest::Approx(1.0));
}

TEST_CASE("SSIM drops as noise is added") {
  cv::Mat t(40, 40, CV_32F);
  cv::randu(t, 0.0f, 1.0f);
  cv::GaussianBlur(t, t, {5, 5}, 2);
  cv::Mat noise(40, 40, CV_32F);
  cv::randn(noise, 0.0f, 0.05f);
  const double small = Ssim(t + noise, t);
  const double large = Ssim(t + noise * 4, t);
  CHECK(small < 1.0);
  CHECK(large < small);
}

TEST_CASE("SSIM works on maps smaller than its window") {
  cv::Mat t = (cv::Mat_<float>(2, 3) << 0, 1, 2, 3, 4, 5);
  CHECK(Ssim(t, t) == doctest::Approx(1.0));
  CHECK(std::isfinite(Ssim(t * 0.5, t)));
}

TEST_CASE("MeasureImage fills counts, GAME and map measures") {
  const ImageMetrics m = MeasureImage(kPred, kTruth, 5.0);
  CHECK(m.truth == 5.0);
  CHECK(m.predicted == doctest::Approx(4.0));
  CHECK(m.density_sum == doctest::Approx(3.0));
  CHECK(m.error() == doctest::Approx(-1.0));
  CHECK(m.game[2] == doctest::Approx(7.0));
  CHECK(m.psnr < kPsnrCap);
  CHECK(m.ssim < 1.0);
}

}  // namespace
}  // namespace csr
