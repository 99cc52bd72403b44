#include "common/io/density_map.h"

#include <doctest/doctest.h>

#include <string>

#include "common/io/h5.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

TEST_CASE("SumBlocks8 sums 8x8 blocks and drops the partial border") {
  cv::Mat d(17, 20, CV_64F, cv::Scalar(0.5));
  d.at<double>(16, 19) = 100;  // in the dropped border
  d.at<double>(9, 10) = 2.5;   // block (1, 1)
  const cv::Mat s = SumBlocks8(d);
  REQUIRE(s.rows == 2);
  REQUIRE(s.cols == 2);
  CHECK(s.type() == CV_32F);
  CHECK(s.at<float>(0, 0) == 32.0f);
  CHECK(s.at<float>(1, 1) == 34.0f);
}

TEST_CASE("SumBlocks8 of a box: the cells and their sum; the whole map is the box at the origin") {
  cv::Mat d(40, 48, CV_32F);
  cv::randu(d, 0.0, 1.0);
  double covered = 0;
  const cv::Rect box(5, 3, 33, 26);  // 4 x 3 cells, a partial border inside the box
  const cv::Mat s = SumBlocks8(d, box, &covered);
  REQUIRE(s.rows == 3);
  REQUIRE(s.cols == 4);
  double expect = 0;
  for (int y = 0; y < 24; ++y) {
    for (int x = 0; x < 32; ++x) expect += d.at<float>(box.y + y, box.x + x);
  }
  CHECK(covered == doctest::Approx(expect).epsilon(1e-12));
  CHECK(s.at<float>(2, 3) == doctest::Approx(cv::sum(d(cv::Rect(box.x + 24, box.y + 16, 8, 8)))[0]));
  const cv::Mat whole = SumBlocks8(d), origin = SumBlocks8(d, cv::Rect(0, 0, 48, 40));
  CHECK(cv::norm(whole, origin, cv::NORM_INF) == 0.0);
}

// A density file holding a 2 x 2 map and, optionally, a marker and a version.
std::string WriteMap(const test::TempDir& tmp, const std::string& name, const std::string& format, int64_t version) {
  const std::string path = (tmp / name).string();
  h5::Lock lock;
  const h5::Hid f_file = h5::Create(path);
  const hid_t f = f_file.get();
  h5::WriteMat(f, "density", cv::Mat(2, 2, CV_32F, cv::Scalar(0.25)));
  if (!format.empty()) h5::SetAttr(f, "format", format);
  if (version != 0) h5::SetAttr(f, "format_version", version);
  return path;
}

void Check(const std::string& path) {
  h5::Lock lock;
  const h5::Hid f_file = h5::OpenRead(path);
  const hid_t f = f_file.get();
  CheckDensityFormat(f, path);
}

TEST_CASE("density maps: the marker and version are written and checked; the original's plain maps pass") {
  test::TempDir tmp;
  {
    const std::string path = (tmp / "ours.h5").string();
    {
      h5::Lock lock;
      const h5::Hid f_file = h5::Create(path);
      const hid_t f = f_file.get();
      h5::WriteMat(f, "density", cv::Mat(2, 2, CV_32F, cv::Scalar(0.25)));
      WriteDensityFormat(f);
    }
    Check(path);
    h5::Lock lock;
    const h5::Hid f_file = h5::OpenRead(path);
    const hid_t f = f_file.get();
    CHECK(h5::GetAttrString(f, "format", path) == kDensityFormat);
    CHECK(h5::GetAttrInt(f, "format_version", path) == kDensityFormatVersion);
  }
  Check(WriteMap(tmp, "original.h5", "", 0));  // the Python preprocessing's files: no attributes
  const std::string newer = WriteMap(tmp, "newer.h5", kDensityFormat, kDensityFormatVersion + 1);
  test::ExpectError([&] { Check(newer); }, {newer, "format version 2", "newer csrnet-cpp"});
  const std::string zero = WriteMap(tmp, "zero.h5", kDensityFormat, -3);
  test::ExpectError([&] { Check(zero); }, {zero, "format version -3"});
  const std::string other = WriteMap(tmp, "other.h5", "csrnet-shards", 1);
  test::ExpectError([&] { Check(other); }, {other, "not a density map", "csrnet-shards"});
}

}  // namespace
}  // namespace csr
