// Rescaling images and points together (common/io/resize.h): the peers'
// size rules, the exact per-side factors, and the limits' checks.
#include "common/io/resize.h"

#include <doctest/doctest.h>

#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "tests/test_expect.h"

namespace csr {
namespace {

using test::ExpectError;

SizeLimits Qnrf() { return DefaultSizeLimits(DatasetKind::kQnrf); }

TEST_CASE("UCF-QNRF's rule keeps the shorter side within [512, 2048], as Bayesian-Loss does") {
  // Inside the range: untouched.
  Rescale r = RescaleFor(3000, 1000, Qnrf(), "x.jpg");
  CHECK(r.identity());
  CHECK(r.width == 3000);
  CHECK(r.height == 1000);
  // Too small: the shorter side becomes exactly 512, the longer round(side * r).
  r = RescaleFor(600, 400, Qnrf(), "x.jpg");
  CHECK(r.height == 512);
  CHECK(r.width == 768);
  CHECK(r.sx == doctest::Approx(768.0 / 600));
  CHECK(r.sy == doctest::Approx(512.0 / 400));
  // Too large: the shorter side becomes 2048 (the longer may stay above it).
  r = RescaleFor(4000, 6000, Qnrf(), "x.jpg");
  CHECK(r.width == 2048);
  CHECK(r.height == 3072);
}

TEST_CASE("JHU-Crowd++'s and NWPU-Crowd's rules cap the longer side; the minimum wins over the maximum") {
  const SizeLimits jhu = DefaultSizeLimits(DatasetKind::kJhu);
  Rescale r = RescaleFor(4096, 3000, jhu, "x.jpg");
  CHECK(r.width == 2048);
  CHECK(r.height == 1500);
  // 4096x600: the cap gives 2048x300, then the shorter side is raised to 512.
  r = RescaleFor(4096, 600, jhu, "x.jpg");
  CHECK(r.height == 512);
  CHECK(r.width == 3495);
  const SizeLimits nwpu = DefaultSizeLimits(DatasetKind::kNwpu);
  CHECK(RescaleFor(1900, 2048, nwpu, "x.jpg").identity());
  r = RescaleFor(3209, 2191, nwpu, "x.jpg");
  CHECK(r.width == 2048);
  CHECK(r.height == 1398);
  CHECK_FALSE(DefaultSizeLimits(DatasetKind::kShanghaiTech).active());
  CHECK_FALSE(DefaultSizeLimits(DatasetKind::kPoints).active());
}

TEST_CASE("points move with the image: a dot drawn at a point is at the rescaled point after rescaling") {
  cv::Mat image(300, 400, CV_8UC3, cv::Scalar(0, 0, 0));
  const Point p = {123.5, 77.5};
  cv::circle(image, cv::Point(123, 77), 6, cv::Scalar(255, 255, 255), cv::FILLED);
  for (const SizeLimits limits : {SizeLimits{600, 0, 0}, SizeLimits{0, 200, 0}}) {
    const Rescale r = RescaleFor(image.cols, image.rows, limits, "x.jpg");
    const cv::Mat out = RescaleImage(image, r);
    CHECK(out.cols == r.width);
    CHECK(out.rows == r.height);
    cv::Mat gray;
    cv::cvtColor(out, gray, cv::COLOR_RGB2GRAY);
    const cv::Moments m = cv::moments(gray);
    // Pixel (i, j) covers [i, i+1) x [j, j+1): its centre is at i + 0.5.
    const Point moved = RescalePoints({p}, r)[0];
    CHECK(m.m10 / m.m00 + 0.5 == doctest::Approx(moved[0]).epsilon(0.005));
    CHECK(m.m01 / m.m00 + 0.5 == doctest::Approx(moved[1]).epsilon(0.005));
  }
}

TEST_CASE("limits are checked, and a rescale past the largest side is one error naming the image") {
  ExpectError([] { SizeLimits{-1, 0, 0}.Check(); }, {"--min-side", "-1"});
  ExpectError([] { SizeLimits{0, 20000, 0}.Check(); }, {"--max-side", "20000"});
  ExpectError([] { SizeLimits{1024, 512, 0}.Check(); }, {"--min-side", "larger than --max-side 512"});
  ExpectError([] { SizeLimits{1024, 0, 512}.Check(); }, {"--min-side", "larger than --max-short-side 512"});
  SizeLimits{512, 2048, 0}.Check();
  ExpectError([] { RescaleFor(100, 10, SizeLimits{8192, 0, 0}, "thin.jpg"); }, {"thin.jpg", "over 16384"});
  CHECK(Describe(Qnrf()) == "min_side=512 max_short_side=2048");
  CHECK(Describe(SizeLimits{}) == "none");
}

}  // namespace
}  // namespace csr
