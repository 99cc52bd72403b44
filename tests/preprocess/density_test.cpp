#include "preprocess/density.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <doctest/doctest.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

double Sum(const cv::Mat& m) { return cv::sum(m)[0]; }

DensityOptions PartA() { return DensityOptions{}; }

DensityOptions PartB() {
  DensityOptions o;
  o.kernel = KernelRule::kFixed;
  o.sigma = 15.0;
  o.border = Border::kReflect;
  return o;
}

// Straightforward scipy-style filter of one unit impulse, for comparison:
// full-image correlation along each axis with the given border handling.
cv::Mat BruteForceImpulse(int width, int height, int row, int col, double sigma, bool reflect) {
  const std::vector<double> w = GaussianKernel1D(sigma);
  const int r = static_cast<int>(w.size() / 2);
  auto fold = [&](int i, int n) {
    if (!reflect) return (i < 0 || i >= n) ? -1 : i;
    const int period = 2 * n;
    i = ((i % period) + period) % period;
    return i < n ? i : period - 1 - i;
  };
  cv::Mat out(height, width, CV_64F, cv::Scalar(0));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      double wy = 0, wx = 0;
      for (int k = -r; k <= r; ++k) {
        if (fold(y + k, height) == row) wy += w[k + r];
        if (fold(x + k, width) == col) wx += w[k + r];
      }
      out.at<double>(y, x) = wy * wx;
    }
  }
  return out;
}

TEST_CASE("kernel weights follow scipy: radius int(4 sigma + 0.5), exp(-x^2/2s^2), sum 1") {
  for (double sigma : {0.3, 1.0, 2.7, 15.0}) {
    const auto w = GaussianKernel1D(sigma);
    const int radius = static_cast<int>(4 * sigma + 0.5);
    REQUIRE(w.size() == static_cast<size_t>(2 * radius + 1));
    CHECK(std::accumulate(w.begin(), w.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-12));
    double norm = 0;
    for (int x = -radius; x <= radius; ++x) norm += std::exp(-x * x / (2 * sigma * sigma));
    for (int x = -radius; x <= radius; ++x) {
      CHECK(w[x + radius] == doctest::Approx(std::exp(-x * x / (2 * sigma * sigma)) / norm).epsilon(1e-12));
    }
  }
}

TEST_CASE("points truncate toward zero, duplicates merge, outside points are dropped") {
  const std::vector<std::array<double, 2>> pts = {{3.9, 2.1},  {3.1, 2.8},  {0.0, 0.0}, {9.99, 4.5},
                                                  {10.0, 1.0}, {-0.5, 1.0}, {2.0, 5.0}};
  const HeadPixels hp = ToHeadPixels(pts, 10, 5);
  CHECK(hp.annotations == 7);
  CHECK(hp.outside == 3);  // x == W, x < 0, y == H
  CHECK(hp.inside == 4);
  CHECK(hp.merged == 1);
  REQUIRE(hp.pixels.size() == 3);
  // Row-major order, as numpy.nonzero.
  CHECK(hp.pixels[0].row == 0);
  CHECK(hp.pixels[0].col == 0);
  CHECK(hp.pixels[1].row == 2);
  CHECK(hp.pixels[1].col == 3);
  CHECK(hp.pixels[1].multiplicity == 2);
  CHECK(hp.pixels[2].row == 4);
  CHECK(hp.pixels[2].col == 9);
}

TEST_CASE("a NaN coordinate is an error naming the file") {
  const std::vector<std::array<double, 2>> pts = {{1, 1}, {std::nan(""), 2}};
  CHECK_THROWS_WITH_AS(ToHeadPixels(pts, 10, 10, "GT_IMG_9.mat"),
                       doctest::Contains("GT_IMG_9.mat: annotation 2 has a non-finite coordinate"), Error);
}

TEST_CASE("adaptive sigma is 0.1 times the distances to the three nearest other heads") {
  std::vector<HeadPixel> px = {{0, 0, 1}, {0, 3, 1}, {4, 0, 1}, {10, 10, 1}, {40, 40, 1}};
  const auto s = HeadSigmas(px, 50, 50, PartA());
  REQUIRE(s.size() == 5);
  // Head (0,0): neighbours at 3, 4 and 5 (the (4,0)-(0,3) triangle), next sqrt(200).
  CHECK(s[0] == doctest::Approx(0.1 * (3 + 4 + std::sqrt(200.0))));
  CHECK(s[1] == doctest::Approx(0.1 * (3 + 5 + std::sqrt(100.0 + 49.0))));
}

TEST_CASE("one head uses (H + W) / 8; two and three heads average the distances that exist") {
  CHECK(HeadSigmas({{5, 5, 1}}, 40, 24, PartA())[0] == doctest::Approx(8.0));
  const auto two = HeadSigmas({{0, 0, 1}, {0, 10, 1}}, 40, 24, PartA());
  CHECK(two[0] == doctest::Approx(0.3 * 10));
  CHECK(two[1] == doctest::Approx(0.3 * 10));
  const auto three = HeadSigmas({{0, 0, 1}, {0, 10, 1}, {0, 30, 1}}, 40, 24, PartA());
  CHECK(three[0] == doctest::Approx(0.3 * (10 + 30) / 2));
  CHECK(three[2] == doctest::Approx(0.3 * (20 + 30) / 2));
  CHECK(HeadSigmas({}, 40, 24, PartA()).empty());
}

TEST_CASE("no heads give an all-zero map of the image size") {
  const cv::Mat d = RenderDensity({}, {}, 33, 17, PartA());
  CHECK(d.rows == 17);
  CHECK(d.cols == 33);
  CHECK(cv::countNonZero(d) == 0);
}

TEST_CASE("constant border matches a brute-force filter and loses the mass outside") {
  const int w = 41, h = 23;
  const std::vector<HeadPixel> px = {{1, 2, 1}, {12, 20, 1}, {22, 40, 1}};
  const std::vector<double> s = {2.5, 1.2, 6.0};
  const cv::Mat d = RenderDensity(px, s, w, h, PartA());
  cv::Mat expect(h, w, CV_64F, cv::Scalar(0));
  for (size_t i = 0; i < px.size(); ++i) expect += BruteForceImpulse(w, h, px[i].row, px[i].col, s[i], false);
  cv::Mat d64;
  d.convertTo(d64, CV_64F);
  CHECK(cv::norm(d64, expect, cv::NORM_INF) < 1e-7);
  CHECK(Sum(d) < 2.9);
  CHECK(Sum(d) > 1.5);
}

TEST_CASE("reflect border matches a brute-force filter and keeps the mass, even when the kernel exceeds the image") {
  const int w = 30, h = 9;
  const std::vector<HeadPixel> px = {{0, 0, 1}, {8, 29, 1}, {4, 15, 1}};
  DensityOptions o = PartB();
  o.sigma = 4.0;  // radius 16 > h: several reflections
  const std::vector<double> s(px.size(), o.sigma);
  const cv::Mat d = RenderDensity(px, s, w, h, o);
  cv::Mat expect(h, w, CV_64F, cv::Scalar(0));
  for (const auto& p : px) expect += BruteForceImpulse(w, h, p.row, p.col, o.sigma, true);
  cv::Mat d64;
  d.convertTo(d64, CV_64F);
  CHECK(cv::norm(d64, expect, cv::NORM_INF) < 1e-7);
  CHECK(Sum(d) == doctest::Approx(3.0).epsilon(1e-5));
}

TEST_CASE("exact-count mode gives every annotation mass 1 inside the image, duplicates included") {
  const std::vector<std::array<double, 2>> pts = {{0.2, 0.1}, {0.7, 0.9}, {59.9, 39.5}, {30, 20}, {31, 20}};
  const HeadPixels hp = ToHeadPixels(pts, 60, 40);
  DensityOptions o = PartA();
  o.mode = DensityMode::kExactCount;
  const cv::Mat d = RenderDensity(hp.pixels, HeadSigmas(hp.pixels, 60, 40, o), 60, 40, o);
  CHECK(Sum(d) == doctest::Approx(5.0).epsilon(1e-5));
  DensityOptions ref = PartA();
  const cv::Mat r = RenderDensity(hp.pixels, HeadSigmas(hp.pixels, 60, 40, ref), 60, 40, ref);
  CHECK(Sum(r) < 4.0);  // the corner heads lose mass, the duplicate counts once
}

TEST_CASE("a large image is rendered identically whatever the row banding") {
  // Kernels crossing many bands must add up the same as a brute-force sum.
  const int w = 64, h = 70;
  const std::vector<HeadPixel> px = {{35, 32, 1}};
  const cv::Mat d = RenderDensity(px, {9.0}, w, h, PartA());
  cv::Mat d64;
  d.convertTo(d64, CV_64F);
  CHECK(cv::norm(d64, BruteForceImpulse(w, h, 35, 32, 9.0, false), cv::NORM_INF) < 1e-7);
}

// Reference vectors: the original algorithm's output for real images.
struct RefCase {
  const char* file;
  bool part_b;
};

TEST_CASE("density maps match the original algorithm's reference vectors within 1e-6" *
          doctest::test_suite("optional")) {
  const auto shared = test::SharedData();
  CSR_SKIP_UNLESS(!shared.empty(), csr::test::kNeedShared, "../shared/data not present");
  const RefCase cases[] = {{"part_A_final/train_data/IMG_40.h5", false},
                           {"part_A_final/train_data/IMG_135.h5", false},
                           {"part_A_final/train_data/IMG_157.h5", false},
                           {"part_A_final/test_data/IMG_34.h5", false}};
  for (const auto& c : cases) {
    const std::string path = (shared / "reference" / c.file).string();
    CAPTURE(path);
    cv::Mat ref;
    std::vector<hsize_t> shape;
    std::vector<float> xy, ref_sigma;
    {
      h5::Lock lock;
      const h5::Hid f_file = h5::OpenRead(path);
      const hid_t f = f_file.get();
      ref = h5::ReadMat2f(f, "density", path);
      xy = h5::ReadFloats(f, "head_pixel_xy", path, &shape);
      ref_sigma = h5::ReadFloats(f, "sigma", path, nullptr);
    }
    std::vector<HeadPixel> px;
    for (size_t i = 0; i < shape[0]; ++i) {
      px.push_back(HeadPixel{static_cast<int>(xy[2 * i + 1]), static_cast<int>(xy[2 * i]), 1});
    }
    const auto sigmas = HeadSigmas(px, ref.cols, ref.rows, PartA());
    for (size_t i = 0; i < px.size(); ++i) REQUIRE(sigmas[i] == doctest::Approx(ref_sigma[i]).epsilon(1e-6));
    const cv::Mat d = RenderDensity(px, sigmas, ref.cols, ref.rows, PartA());
    CHECK(cv::norm(d, ref, cv::NORM_INF) <= 1e-6);
  }
}

TEST_CASE("a kernel far wider than the image costs only the image, and stays finite") {
  // sigma 6e8 used to overflow the int radius (segfault), 5e8 to ask for a
  // vector of 4e9 weights, 1e6 to spend minutes building 8e6 of them per head.
  for (const double sigma : {1e6, 5e8, 6e8, 1e12}) {
    CAPTURE(sigma);
    const std::vector<HeadPixel> px = {{12, 20, 1}, {3, 39, 1}};
    DensityOptions o = PartA();
    const cv::Mat lost = RenderDensity(px, {sigma, sigma}, 40, 30, o);
    CHECK(cv::checkRange(lost));
    CHECK(cv::sum(lost)[0] >= 0.0);
    CHECK(cv::sum(lost)[0] < 1e-3);  // constant border: almost all the mass falls outside
    o.border = Border::kReflect;
    const cv::Mat kept = RenderDensity(px, {sigma, sigma}, 40, 30, o);
    CHECK(cv::sum(kept)[0] == doctest::Approx(2.0).epsilon(1e-5));  // reflect keeps the mass
    double lo, hi;
    cv::minMaxLoc(kept, &lo, &hi);
    CHECK(hi - lo < 1e-6);  // and spreads it flat
    o.border = Border::kConstant;
    o.mode = DensityMode::kExactCount;
    CHECK(cv::sum(RenderDensity(px, {sigma, sigma}, 40, 30, o))[0] == doctest::Approx(2.0).epsilon(1e-5));
  }
}

TEST_CASE("past the exact-sum cap, the closed-form normalisation matches scipy's summed weights") {
  // A 10 x 10 image caps the summed radius at 4*10+256 = 296; sigma 80 has radius 320.
  const double sigma = 80.0;
  const std::vector<double> w = GaussianKernel1D(sigma);
  const int r = static_cast<int>(w.size() / 2);
  const cv::Mat d = RenderDensity({{5, 5, 1}}, {sigma}, 10, 10, PartA());
  double worst = 0.0;
  for (int y = 0; y < 10; ++y) {
    for (int x = 0; x < 10; ++x) {
      const double ref = w[y - 5 + r] * w[x - 5 + r];
      worst = std::max(worst, std::abs(d.at<float>(y, x) - ref) / ref);
    }
  }
  CHECK(worst < 1e-6);
}

TEST_CASE("adaptive sigmas of heads far apart on a huge image stay bounded by the image") {
  const std::vector<HeadPixel> px = {{0, 0, 1}, {3, 29999, 1}};
  DensityOptions o = PartA();
  o.beta = 10.0;
  o.neighbors = 1;
  const std::vector<double> s = HeadSigmas(px, 30000, 4, o);
  CHECK(s[0] > 2.9e5);  // radius ~1.2e6, past the cap of 4*30000+256
  const cv::Mat d = RenderDensity(px, s, 30000, 4, o);
  CHECK(cv::checkRange(d));
  CHECK(cv::sum(d)[0] > 0.0);
  CHECK(cv::sum(d)[0] < 2.0);
}

TEST_CASE("heads rendered in memory-bounded batches give the same bits as one at a time") {
  // 2000 image-wide kernels on a 20000 x 8 image: about 20000 floats of
  // profile each, so the 16M-float budget splits them into three batches.
  const int w = 20000, h = 8;
  std::vector<HeadPixel> px;
  for (int i = 0; i < 2000; ++i) px.push_back({i % h, (i * 7919) % w, 1});
  std::sort(px.begin(), px.end(),
            [](const HeadPixel& a, const HeadPixel& b) { return a.row != b.row ? a.row < b.row : a.col < b.col; });
  px.erase(std::unique(px.begin(), px.end(),
                       [](const HeadPixel& a, const HeadPixel& b) { return a.row == b.row && a.col == b.col; }),
           px.end());
  const std::vector<double> sigmas(px.size(), 6000.0);
  DensityOptions o = PartA();
  o.kernel = KernelRule::kFixed;
  const cv::Mat all = RenderDensity(px, sigmas, w, h, o);
  cv::Mat one_by_one(h, w, CV_32F, cv::Scalar(0));
  for (size_t i = 0; i < px.size(); ++i) one_by_one += RenderDensity({px[i]}, {sigmas[i]}, w, h, o);
  CHECK(cv::norm(all, one_by_one, cv::NORM_INF) == 0.0);
}

TEST_CASE("DensityCrc32 is zlib's CRC-32 of the float bytes, row by row") {
  cv::Mat m(3, 5, CV_32F);
  for (int i = 0; i < 15; ++i) m.at<float>(i / 5, i % 5) = 0.5f * i;
  CHECK(DensityCrc32(m) == Crc32(m.data, 15 * sizeof(float)));
  CHECK(DensityCrc32(m(cv::Rect(0, 0, 5, 3))) == DensityCrc32(m.clone()));
  cv::Mat flipped = m.clone();
  flipped.at<float>(1, 1) = -flipped.at<float>(1, 1);
  CHECK(DensityCrc32(flipped) != DensityCrc32(m));
}

}  // namespace
}  // namespace csr

namespace csr {
TEST_CASE("density settings: names parse both ways, a typo is an error naming the option, bounds are checked") {
  for (KernelRule v : {KernelRule::kAdaptive, KernelRule::kFixed}) CHECK(ParseKernelRule(Name(v)) == v);
  for (Border v : {Border::kConstant, Border::kReflect}) CHECK(ParseBorder(Name(v)) == v);
  for (DensityMode v : {DensityMode::kReference, DensityMode::kExactCount}) CHECK(ParseDensityMode(Name(v)) == v);
  test::ExpectError([] { ParseBorder("reflct"); }, {"--border", "expected constant or reflect, got 'reflct'"});
  test::ExpectError([] { ParseKernelRule("fixd"); }, {"--kernel", "'fixd'"});
  test::ExpectError([] { ParseDensityMode("exact"); }, {"--mode", "'exact'"});
  DensityOptions o;
  o.Check();
  o.sigma = 0;
  test::ExpectError([&] { o.Check(); }, {"--sigma", "got 0"});
  o = DensityOptions{};
  o.neighbors = 0;
  test::ExpectError([&] { o.Check(); }, {"--neighbors"});
  o = DensityOptions{};
  o.truncate = std::nan("");
  test::ExpectError([&] { o.Check(); }, {"truncate"});
}
}  // namespace csr
