// Writes the seed corpus of every fuzz target into OUT/<target>/, made with
// the project's own writers (the fixtures the tests use): valid inputs the
// fuzzer mutates from, and a few near misses (truncated, empty).
#include <opencv2/imgcodecs.hpp>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "common/base/fs.h"
#include "common/io/mat_io.h"
#include "tests/fuzz/shard_set_fixture.h"

namespace csr::fuzz {
namespace {

void Put(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  fs::create_directories(dir);
  WriteBytes(dir / name, bytes.data(), bytes.size());
}

std::vector<uint8_t> FileBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void ImageSeeds(const fs::path& dir) {
  cv::Mat img(12, 20, CV_8UC3, cv::Scalar(10, 200, 30));
  for (const char* ext : {".jpg", ".png"}) {
    std::vector<uint8_t> bytes;
    cv::imencode(ext, img, bytes);
    Put(dir, std::string("valid") + ext, bytes);
    bytes.resize(bytes.size() / 2);
    Put(dir, std::string("truncated") + ext, bytes);
  }
  cv::Mat gray(7, 3, CV_8UC1, cv::Scalar(99));
  std::vector<uint8_t> bytes;
  cv::imencode(".jpg", gray, bytes);
  Put(dir, "gray.jpg", bytes);
}

void MatSeeds(const fs::path& dir) {
  const std::vector<std::array<double, 2>> points = {{1.5, 2.5}, {10.25, 3.0}, {7.0, 7.0}};
  int k = 0;
  for (const char* cls : {"uint16", "uint8", "double"}) {
    const fs::path tmp = Scratch() / "seed.mat";
    WriteAnnotation(tmp.string(), k == 2 ? std::vector<std::array<double, 2>>{} : points, cls);
    Put(dir, StrCat("annotation_", cls, ".mat"), FileBytes(tmp));
    ++k;
  }
  const fs::path tmp = Scratch() / "seed.mat";
  WritePointsVariable(tmp.string(), "annPoints", points);
  Put(dir, "annpoints.mat", FileBytes(tmp));
}

// One seed per reader of points_fuzz.cpp: the selector byte, then a valid file.
void PointSeeds(const fs::path& dir) {
  const std::vector<std::string> files = {
      "120 45 12 14 1 0\n300 60 30 32 3 1\n",
      "0001,171,marathon,0,0\n0002,0,water,2,1\n",
      R"({"img_id": "0001.jpg", "human_num": 2, "points": [[10.5, 20], [30, 40]], "boxes": [[1, 2, 3, 4]]})",
      R"({"points": [[1, 2], [3.5, 4]]})",
      "x,y\n1,2\n3.5,4\n",
      "1 2\n# comment\n3.5 4\n",
      "0001 1 2\n0002 0 4\n"};
  for (size_t i = 0; i < files.size(); ++i) {
    std::vector<uint8_t> bytes = {static_cast<uint8_t>(i)};
    bytes.insert(bytes.end(), files[i].begin(), files[i].end());
    Put(dir, StrCat("reader_", i), bytes);
  }
}

// A stored (uncompressed) zip, as torch.save and torch::save write them.
std::vector<uint8_t> TinyZip() {
  std::vector<uint8_t> out, central;
  auto u16 = [](std::vector<uint8_t>& v, uint32_t x) {
    v.push_back(x & 0xff);
    v.push_back((x >> 8) & 0xff);
  };
  auto u32 = [&](std::vector<uint8_t>& v, uint32_t x) {
    u16(v, x & 0xffff);
    u16(v, x >> 16);
  };
  const std::vector<std::pair<std::string, std::string>> entries = {{"archive/data.pkl", "\x80\x02}q\x00."},
                                                                    {"archive/data/0", std::string(64, '\x01')}};
  for (const auto& [name, body] : entries) {
    const uint32_t crc = Crc32(body.data(), body.size());
    const auto offset = static_cast<uint32_t>(out.size());
    for (auto* v : {&out, &central}) {
      const bool c = v == &central;
      u32(*v, c ? 0x02014b50 : 0x04034b50);
      if (c) u16(*v, 20);  // version made by
      u16(*v, 20);         // version needed
      u16(*v, 0);          // flags
      u16(*v, 0);          // method: stored
      u32(*v, 0);          // time, date
      u32(*v, crc);
      u32(*v, static_cast<uint32_t>(body.size()));
      u32(*v, static_cast<uint32_t>(body.size()));
      u16(*v, static_cast<uint32_t>(name.size()));
      u16(*v, 0);  // extra
      if (c) {
        u16(*v, 0);  // comment
        u16(*v, 0);  // disk
        u16(*v, 0);  // internal attributes
        u32(*v, 0);  // external attributes
        u32(*v, offset);
      }
      v->insert(v->end(), name.begin(), name.end());
      if (!c) v->insert(v->end(), body.begin(), body.end());
    }
  }
  const auto cd_offset = static_cast<uint32_t>(out.size());
  out.insert(out.end(), central.begin(), central.end());
  u32(out, 0x06054b50);
  u16(out, 0);
  u16(out, 0);
  u16(out, static_cast<uint32_t>(entries.size()));
  u16(out, static_cast<uint32_t>(entries.size()));
  u32(out, static_cast<uint32_t>(central.size()));
  u32(out, cd_offset);
  u16(out, 0);
  return out;
}

}  // namespace
}  // namespace csr::fuzz

int main(int argc, char** argv) {
  using namespace csr::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out(argv[1]);
  ImageSeeds(out / "image_header");
  MatSeeds(out / "mat");
  PointSeeds(out / "points");
  const ShardSetFixture& f = Fixture();
  Put(out / "manifest", "valid.json", std::vector<uint8_t>(f.manifest.begin(), f.manifest.end()));
  Put(out / "manifest", "empty.json", {'{', '}'});
  Put(out / "shard", "valid.h5", f.shard);
  Put(out / "zip", "tiny.zip", TinyZip());
  std::printf("fuzz_seeds: wrote the seed corpus under %s\n", out.c_str());
  return 0;
}
