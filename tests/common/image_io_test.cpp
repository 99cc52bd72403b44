#include "common/io/image_io.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;

using test::ExpectError;

// A noisy image (so JPEG files are not trivially small) of the given type.
cv::Mat Noise(int rows, int cols, int type, uint64_t seed) {
  cv::Mat m(rows, cols, type);
  cv::RNG(seed).fill(m, cv::RNG::UNIFORM, 0, 256);
  return m;
}

fs::path Write(const test::TempDir& dir, const std::string& name, const cv::Mat& img,
               const std::vector<int>& params = {}) {
  const fs::path p = dir / name;
  REQUIRE(cv::imwrite(p.string(), img, params));
  return p;
}

// Copies the first `keep` bytes of `src` to `dst`.
fs::path Cut(const fs::path& src, const fs::path& dst, size_t keep) {
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(keep <= bytes.size());
  std::ofstream out(dst, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(keep));
  return dst;
}

TEST_CASE("image_io: ReadImageSize of JPEG and PNG files equals their decoded size") {
  test::TempDir dir;
  struct Case {
    int w, h, type;
  };
  int n = 0;
  for (const Case& c : {Case{1, 1, CV_8UC3}, Case{7, 3, CV_8UC3}, Case{640, 480, CV_8UC3}, Case{182, 420, CV_8UC1},
                        Case{1024, 768, CV_8UC3}, Case{300, 200, CV_8UC1}, Case{33, 65, CV_8UC4}}) {
    const cv::Mat img = Noise(c.h, c.w, c.type, static_cast<uint64_t>(++n));
    std::vector<std::string> names = {"png" + std::to_string(n) + ".png"};
    if (c.type != CV_8UC4) {
      names.push_back("jpg" + std::to_string(n) + ".jpg");
      names.push_back("prog" + std::to_string(n) + ".jpg");
    }
    for (const std::string& name : names) {
      std::vector<int> params;
      if (name.rfind("prog", 0) == 0) params = {cv::IMWRITE_JPEG_PROGRESSIVE, 1};
      const fs::path p = Write(dir, name, img, params);
      INFO(name << " " << c.w << "x" << c.h);
      const cv::Mat decoded = cv::imread(p.string(), cv::IMREAD_UNCHANGED);
      const ImageSize s = ReadImageSize(p.string());
      CHECK(s.width == decoded.cols);
      CHECK(s.height == decoded.rows);
      CHECK(s.width == c.w);
      CHECK(s.height == c.h);
    }
  }
}

TEST_CASE("image_io: a JPEG cut in half is reported as truncated by both readers") {
  test::TempDir dir;
  const fs::path whole = Write(dir, "whole.jpg", Noise(240, 320, CV_8UC3, 1));
  const fs::path half = Cut(whole, dir / "half.jpg", fs::file_size(whole) / 2);
  ExpectError([&] { ReadImageSize(half.string()); }, {half.string(), "truncated"});
  ExpectError([&] { ReadImageRGB(half.string()); }, {half.string(), "truncated"});
  // Only the header survived.
  const fs::path head = Cut(whole, dir / "head.jpg", 40);
  ExpectError([&] { ReadImageSize(head.string()); }, {head.string(), "truncated"});
}

TEST_CASE("image_io: a progressive JPEG cut after some scans is reported as truncated") {
  test::TempDir dir;
  const fs::path whole = Write(dir, "p.jpg", Noise(200, 300, CV_8UC3, 4), {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  for (size_t keep : {fs::file_size(whole) / 3, fs::file_size(whole) - 2}) {
    INFO("kept " << keep << " bytes");
    const fs::path cut = Cut(whole, dir / ("cut" + std::to_string(keep) + ".jpg"), keep);
    ExpectError([&] { ReadImageSize(cut.string()); }, {cut.string(), "truncated"});
  }
}

TEST_CASE("image_io: a complete JPEG followed by trailing bytes is accepted, as decoders do") {
  // Some cameras and editors append data after the end-of-image marker;
  // libjpeg ignores it, so the image is complete.
  test::TempDir dir;
  const cv::Mat img = Noise(48, 64, CV_8UC3, 5);
  for (const std::string& trailer :
       {std::string("\0\0\n", 3), std::string("trailing camera data \x01\x02\xFF\x00"), std::string(1000, '\x55')}) {
    const fs::path p = Write(dir, "t.jpg", img);
    {
      std::ofstream f(p, std::ios::binary | std::ios::app);
      f << trailer;
    }
    INFO("trailer of " << trailer.size() << " bytes");
    REQUIRE_FALSE(cv::imread(p.string()).empty());
    const ImageSize s = ReadImageSize(p.string());
    CHECK(s.width == 64);
    CHECK(s.height == 48);
    CHECK(ReadImageRGB(p.string()).size() == cv::Size(64, 48));
  }
}

TEST_CASE("image_io: a JPEG with extraneous bytes before a marker ('Corrupt JPEG data', as in UCF-QNRF) loads") {
  // libjpeg warns "Corrupt JPEG data: N extraneous bytes before marker" and
  // decodes the image: such files must load, with the same pixels.
  test::TempDir dir;
  const cv::Mat img = Noise(48, 64, CV_8UC3, 9);
  const fs::path p = Write(dir, "q.jpg", img);
  std::string bytes = ReadTextFile(p);
  // The first marker after SOI and APP0 (FF D8, FF E0 + length): insert junk before it.
  REQUIRE(static_cast<unsigned char>(bytes[2]) == 0xFF);
  const size_t app0 = 4 + ((static_cast<unsigned char>(bytes[4]) << 8) | static_cast<unsigned char>(bytes[5]));
  REQUIRE(static_cast<unsigned char>(bytes[app0]) == 0xFF);
  bytes.insert(app0, std::string("\x12\x34\x56", 3));
  const fs::path q = dir / "corrupt.jpg";
  WriteTextFileAtomic(q, bytes);
  const ImageSize s = ReadImageSize(q.string());
  CHECK(s.width == 64);
  CHECK(s.height == 48);
  const cv::Mat a = ReadImageRGB(p.string()), b = ReadImageRGB(q.string());
  REQUIRE(b.size() == a.size());
  CHECK(cv::norm(a, b, cv::NORM_INF) == 0);
}

TEST_CASE("image_io: a truncated PNG throws an Error naming the file") {
  test::TempDir dir;
  const fs::path whole = Write(dir, "whole.png", Noise(120, 90, CV_8UC3, 2));
  for (size_t keep : {fs::file_size(whole) / 2, fs::file_size(whole) - 1, size_t{30}, size_t{8}}) {
    INFO("kept " << keep << " bytes");
    const fs::path cut = Cut(whole, dir / ("cut" + std::to_string(keep) + ".png"), keep);
    ExpectError([&] { ReadImageSize(cut.string()); }, {cut.string(), "truncated"});
    ExpectError([&] { ReadImageRGB(cut.string()); }, {cut.string()});
  }
}

TEST_CASE("image_io: a text file named .jpg, an empty file and a missing file throw an Error naming them") {
  test::TempDir dir;
  const fs::path text = dir / "IMG_1.jpg";
  std::ofstream(text) << "not an image at all, just some words\n";
  const fs::path empty = dir / "IMG_2.jpg";
  std::ofstream(empty).flush();
  const fs::path missing = dir / "IMG_3.jpg";
  for (const fs::path& p : {text, empty, missing}) {
    INFO(p);
    ExpectError([&] { ReadImageSize(p.string()); }, {p.string()});
    ExpectError([&] { ReadImageRGB(p.string()); }, {p.string()});
  }
}

TEST_CASE("image_io: ReadImageRGB turns a grayscale image into three equal channels") {
  test::TempDir dir;
  const cv::Mat gray = Noise(31, 17, CV_8UC1, 3);
  for (const char* name : {"g.png", "g.jpg"}) {
    INFO(name);
    const fs::path p = Write(dir, name, gray);
    const cv::Mat rgb = ReadImageRGB(p.string());
    REQUIRE(rgb.type() == CV_8UC3);
    CHECK(rgb.size() == gray.size());
    cv::Mat ch[3];
    cv::split(rgb, ch);
    CHECK(cv::norm(ch[0], ch[1], cv::NORM_INF) == 0);
    CHECK(cv::norm(ch[0], ch[2], cv::NORM_INF) == 0);
    if (std::string(name) == "g.png") CHECK(cv::norm(ch[0], gray, cv::NORM_INF) == 0);  // lossless
  }
}

TEST_CASE("image_io: ReadImageRGB returns red, green, blue in that order") {
  test::TempDir dir;
  // OpenCV writes BGR: (255, 0, 0) is pure blue.
  const fs::path blue = Write(dir, "blue.png", cv::Mat(4, 6, CV_8UC3, cv::Scalar(255, 0, 0)));
  const cv::Mat rgb = ReadImageRGB(blue.string());
  REQUIRE(rgb.type() == CV_8UC3);
  CHECK(rgb.at<cv::Vec3b>(2, 3) == cv::Vec3b(0, 0, 255));
  const cv::Mat mixed(2, 2, CV_8UC3, cv::Scalar(10, 20, 30));  // B=10, G=20, R=30
  const cv::Mat m = ReadImageRGB(Write(dir, "mixed.png", mixed).string());
  CHECK(m.at<cv::Vec3b>(1, 1) == cv::Vec3b(30, 20, 10));
}

TEST_CASE("image_io: ReadImageRGB drops the alpha channel of a 4-channel PNG") {
  test::TempDir dir;
  cv::Mat bgra(5, 7, CV_8UC4, cv::Scalar(10, 20, 30, 0));  // fully transparent
  bgra.at<cv::Vec4b>(0, 0) = cv::Vec4b(1, 2, 3, 255);
  const cv::Mat rgb = ReadImageRGB(Write(dir, "alpha.png", bgra).string());
  REQUIRE(rgb.type() == CV_8UC3);
  CHECK(rgb.size() == cv::Size(7, 5));
  CHECK(rgb.at<cv::Vec3b>(4, 6) == cv::Vec3b(30, 20, 10));  // colour kept, not blended with black
  CHECK(rgb.at<cv::Vec3b>(0, 0) == cv::Vec3b(3, 2, 1));
}

TEST_CASE("image_io: a 16-bit PNG is rejected by ReadImageRGB with an Error naming it") {
  test::TempDir dir;
  const fs::path p = Write(dir, "deep.png", cv::Mat(3, 3, CV_16UC1, cv::Scalar(40000)));
  CHECK(ReadImageSize(p.string()).width == 3);
  ExpectError([&] { ReadImageRGB(p.string()); }, {p.string(), "8-bit"});
}

TEST_CASE("image_io: the real samples decode at their header size; IMG_40 is a grayscale JPEG" *
          doctest::test_suite("optional")) {
  const fs::path data = test::SharedData();
  const fs::path img40 = data / "ShanghaiTech/part_A_final/train_data/images/IMG_40.jpg";
  CSR_SKIP_UNLESS(!data.empty() && fs::exists(img40), csr::test::kNeedShared,
                  "shared ShanghaiTech samples not present");
  const cv::Mat raw = cv::imread(img40.string(), cv::IMREAD_UNCHANGED);
  REQUIRE(raw.channels() == 1);
  const cv::Mat rgb = ReadImageRGB(img40.string());
  REQUIRE(rgb.type() == CV_8UC3);
  cv::Mat ch[3];
  cv::split(rgb, ch);
  CHECK(cv::norm(ch[0], raw, cv::NORM_INF) == 0);
  CHECK(cv::norm(ch[2], raw, cv::NORM_INF) == 0);

  int checked = 0;
  for (const auto& e : fs::recursive_directory_iterator(data / "ShanghaiTech")) {
    if (e.path().extension() != ".jpg") continue;
    INFO(e.path());
    const ImageSize s = ReadImageSize(e.path().string());
    const cv::Mat m = ReadImageRGB(e.path().string());
    CHECK(s.width == m.cols);
    CHECK(s.height == m.rows);
    if (e.path().parent_path().parent_path().parent_path().filename() == "part_B_final") {
      CHECK(s.width == 1024);
      CHECK(s.height == 768);
    }
    ++checked;
  }
  CHECK(checked >= 12);
}

// Overwrites bytes of `path` at `at`.
void Patch(const fs::path& path, size_t at, const std::vector<unsigned char>& bytes) {
  std::string d = ReadTextFile(path);
  REQUIRE(at + bytes.size() <= d.size());
  for (size_t i = 0; i < bytes.size(); ++i) d[at + i] = static_cast<char>(bytes[i]);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << d;
}

TEST_CASE("image_io: forged headers claiming huge sizes are refused before anything is allocated") {
  test::TempDir dir;
  const fs::path jpg = Write(dir, "big.jpg", Noise(16, 16, CV_8UC3, 1));
  const std::string bytes = ReadTextFile(jpg);
  size_t sof = bytes.find("\xFF\xC0");
  REQUIRE(sof != std::string::npos);
  Patch(jpg, sof + 5, {0xFF, 0xFF, 0xFF, 0xFF});  // 65535 x 65535: 4 Gpixel
  ExpectError([&] { ReadImageSize(jpg.string()); }, {jpg.string(), "65535x65535", "larger than the supported"});
  ExpectError([&] { ReadImageRGB(jpg.string()); }, {jpg.string(), "larger than the supported"});

  const fs::path png = Write(dir, "big.png", Noise(16, 16, CV_8UC3, 2));
  Patch(png, 16, {0x80, 0x00, 0x00, 0x00});  // 2^31: was read into a negative int
  ExpectError([&] { ReadImageSize(png.string()); }, {png.string(), "2147483648x16"});
  Patch(png, 16, {0x00, 0x00, 0xFF, 0xFF});
  Patch(png, 20, {0x00, 0x00, 0xFF, 0xFF});
  ExpectError([&] { ReadImageRGB(png.string()); }, {png.string(), "larger than the supported"});
  Patch(png, 16, {0x00, 0x00, 0x00, 0x00});
  ExpectError([&] { ReadImageSize(png.string()); }, {png.string(), "corrupt PNG (size 0x65535)"});

  const fs::path bmp = Write(dir, "big.bmp", Noise(16, 16, CV_8UC3, 3));
  CHECK(ReadImageSize(bmp.string()).width == 16);
  Patch(bmp, 18, {0xFF, 0xFF, 0xFF, 0x7F});
  ExpectError([&] { ReadImageSize(bmp.string()); }, {bmp.string(), "larger than the supported"});
  ExpectError([&] { ReadImageRGB(bmp.string()); }, {bmp.string(), "larger than the supported"});
}

}  // namespace
}  // namespace csr

namespace csr {
TEST_CASE("IsImageFile: the one extension list, case-insensitive, on names and paths") {
  for (const char* yes : {"IMG_1.jpg", "a/b/IMG_1.JPG", "x.jpeg", "x.png", "x.bmp", "x.tif", "x.TIFF", "x.webp",
                          "x.ppm", "x.pgm", "x.pnm"}) {
    CHECK_MESSAGE(IsImageFile(yes), yes);
  }
  for (const char* no : {"IMG_1.mat", "Thumbs.db", ".DS_Store", "jpg", "dir.jpg/file", "x.jpg.tmp-1-2", ""}) {
    CHECK_MESSAGE(!IsImageFile(no), no);
  }
}
}  // namespace csr
