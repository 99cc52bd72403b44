// crop_shards: crop geometry, targets (sum8 against the density, cubic against
// the reference vectors), pixel exactness, determinism across thread counts,
// the manifest, inspection/export, and bad input (one error line, no manifest).
#include "preprocess/crop_shards.h"

#include <doctest/doctest.h>

#include <sys/mount.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "common/base/random.h"
#include "common/io/density_map.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "common/shards/shards.h"
#include "preprocess/gt_gen.h"
#include "preprocess/synthetic.h"
#include "tests/preprocess/crop_shards_fixture.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

using test::ExpectError;

using test::FixtureImage;

// Two train images big enough to crop, a grayscale one, one too small to crop,
// and two test images (one not a multiple of 8).
const std::vector<FixtureImage> kSmallSet = {
    {"train", 200, 120, 30}, {"train", 97, 161, 25, true}, {"train", 150, 150, 12},
    {"train", 14, 60, 3},    {"test", 180, 100, 40},       {"test", 83, 61, 10},
};

CropShardsOptions OptionsFor(const test::TempDir& tmp, const std::string& out = "shards") {
  CropShardsOptions o;
  o.root = (tmp / "data").string();
  o.out = (tmp / out).string();
  o.quiet = true;
  o.records_per_shard = 7;
  return o;
}

cv::Mat DensityOf(const fs::path& h5) {
  h5::Lock lock;
  const h5::Hid f_file = h5::OpenRead(h5.string());
  const hid_t f = f_file.get();
  return h5::ReadMat(f, "density", h5.string());
}

// Where the density dataset's bytes start in the file (contiguous layout).
int64_t DensityDataOffset(const fs::path& h5) {
  h5::Lock lock;
  const h5::Hid f = h5::OpenRead(h5.string());
  const h5::Hid ds(H5Dopen2(f.get(), "density", H5P_DEFAULT));
  REQUIRE(ds.valid());
  return static_cast<int64_t>(H5Dget_offset(ds.get()));
}

// Overwrites the density dataset's values in place, keeping gt_gen's attributes.
void RewriteDensity(const fs::path& h5, const cv::Mat& d) {
  h5::Lock lock;
  const h5::Hid f(H5Fopen(h5.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  const h5::Hid ds(H5Dopen2(f.get(), "density", H5P_DEFAULT));
  REQUIRE(ds.valid());
  REQUIRE(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data) >= 0);
}

fs::path PartDir(const test::TempDir& tmp) { return tmp / "data" / "part_A_final"; }

fs::path ImagePath(const test::TempDir& tmp, const std::string& split, const std::string& name) {
  return PartDir(tmp) / (split + "_data") / "images" / name;
}

fs::path DensityPath(const test::TempDir& tmp, const std::string& split, const std::string& name) {
  return PartDir(tmp) / (split + "_data") / "ground_truth" / (fs::path(name).stem().string() + ".h5");
}

HeadPixels HeadsOf(const test::TempDir& tmp, const std::string& split, const std::string& name, int w, int h) {
  const fs::path mat =
      PartDir(tmp) / (split + "_data") / "ground_truth" / ("GT_" + fs::path(name).stem().string() + ".mat");
  return ToHeadPixels(ReadAnnotation(mat.string()).points, w, h);
}

bool Overlap(const CropBox& a, const CropBox& b) { return (a.rect() & b.rect()).area() > 0; }

std::string ReadAll(const fs::path& p) { return fs::exists(p) ? ReadTextFile(p) : ""; }

// Runs the built tool; returns the exit code and its stderr lines.
int RunTool(const std::string& args, std::vector<std::string>* err, const test::TempDir& tmp) {
  const fs::path log = tmp / "stderr.txt";
  const int rc = test::Run(test::Tool("crop_shards") + " " + args + " 2>" + log.string() + " >/dev/null");
  err->clear();
  std::istringstream in(ReadAll(log));
  for (std::string line; std::getline(in, line);) err->push_back(line);
  return rc;
}

// Exactly one line says "error:", it names `file` and mentions `what`; no HDF5 stack.
void CheckOneErrorLine(const std::vector<std::string>& err, const std::string& file, const std::string& what) {
  int errors = 0;
  for (const auto& line : err) {
    CHECK(line.find("HDF5-DIAG") == std::string::npos);  // no library error stack
    CHECK(line.find("#000") == std::string::npos);
    MESSAGE(line);
    if (line.find("error:") == std::string::npos) continue;
    ++errors;
    CHECK_MESSAGE(line.find(file) != std::string::npos, line);
    CHECK_MESSAGE(line.find(what) != std::string::npos, line);
  }
  CHECK(errors == 1);
}

// ------------------------------------------------------------------ geometry

TEST_CASE("crop size is half the image rounded down to a multiple of 8") {
  CHECK(CropSize(1024, 768).w == 512);
  CHECK(CropSize(1024, 768).h == 384);
  CHECK(CropSize(300, 200).w == 144);  // 150 -> 144
  CHECK(CropSize(300, 200).h == 96);   // 100 -> 96
  CHECK(CropSize(182, 420).w == 88);   // 91 -> 88
  CHECK(CropSize(31, 17).w == 8);
  CHECK(CropSize(31, 17).h == 8);
  CHECK(CropSize(15, 100).w == 0);
}

TEST_CASE("the four quarters sit at the corners and do not overlap; random crops lie inside") {
  for (auto [w, h] : {std::pair{1024, 768}, {300, 200}, {182, 420}, {17, 16}, {420, 182}, {1023, 1023}}) {
    CAPTURE(w);
    CAPTURE(h);
    const auto crops = TrainCrops(w, h, 5, ImageSeed(2018, "train", "IMG_1.jpg"));
    REQUIRE(crops.size() == 9);
    const CropBox size = CropSize(w, h);
    CHECK(crops[0] == CropBox{0, 0, size.w, size.h});
    CHECK(crops[1] == CropBox{w - size.w, 0, size.w, size.h});
    CHECK(crops[2] == CropBox{0, h - size.h, size.w, size.h});
    CHECK(crops[3] == CropBox{w - size.w, h - size.h, size.w, size.h});
    for (int a = 0; a < 4; ++a) {
      for (int b = a + 1; b < 4; ++b) CHECK_FALSE(Overlap(crops[a], crops[b]));
    }
    for (const auto& c : crops) {
      CHECK(c.w % 8 == 0);
      CHECK(c.h % 8 == 0);
      CHECK((c.rect() & cv::Rect(0, 0, w, h)) == c.rect());
    }
  }
}

TEST_CASE("random crops follow the seed and the image name, and --random-crops sets their number") {
  const auto a = TrainCrops(1000, 700, 5, ImageSeed(1, "train", "IMG_1.jpg"));
  CHECK(a == TrainCrops(1000, 700, 5, ImageSeed(1, "train", "IMG_1.jpg")));
  CHECK_FALSE(a == TrainCrops(1000, 700, 5, ImageSeed(2, "train", "IMG_1.jpg")));
  CHECK_FALSE(a == TrainCrops(1000, 700, 5, ImageSeed(1, "train", "IMG_2.jpg")));
  CHECK(TrainCrops(1000, 700, 0, 1).size() == 4);
  CHECK(TrainCrops(1000, 700, 12, 1).size() == 16);
  CHECK(TrainCrops(15, 700, 5, 1).empty());
}

TEST_CASE("random positions cover the whole valid range") {
  std::mt19937_64 rng(3);
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 4000; ++i) ++seen[UniformUpTo(rng, 3)];
  for (int v : seen) CHECK(v > 800);
  CHECK(UniformUpTo(rng, 0) == 0);
  // Both ends of an image's range get used: x = 0 and x = W - w.
  int low = 0, high = 0;
  for (uint64_t s = 0; s < 400; ++s) {
    for (const auto& c : TrainCrops(40, 40, 5, s)) {
      low += c.x == 0;
      high += c.x == 40 - 16;
    }
  }
  CHECK(low > 400);  // includes the quarters' 800
  CHECK(high > 800);
}

// ------------------------------------------------------------------ targets

TEST_CASE("sum8 cells are 8x8 block sums and add up to the density in the box") {
  cv::Mat d(77, 93, CV_32F);
  cv::RNG rng(5);
  rng.fill(d, cv::RNG::UNIFORM, 0.0, 0.01);
  const cv::Rect box(13, 5, 48, 64);
  const cv::Mat t = SumBlocks8(d, box);
  REQUIRE(t.rows == 8);
  REQUIRE(t.cols == 6);
  CHECK(t.at<float>(2, 3) == doctest::Approx(cv::sum(d(cv::Rect(13 + 24, 5 + 16, 8, 8)))[0]).epsilon(1e-6));
  CHECK(cv::sum(t)[0] == doctest::Approx(BoxSum(d, box)).epsilon(1e-6));
  double covered = 0;
  SumBlocks8(d, box, &covered);
  CHECK(covered == doctest::Approx(BoxSum(d, box)).epsilon(1e-12));
  // Not a multiple of 8: floor, the partial blocks are left out.
  const cv::Mat whole = SumBlocks8(d, cv::Rect(0, 0, 93, 77));
  CHECK(whole.rows == 9);
  CHECK(whole.cols == 11);
  CHECK(cv::sum(whole)[0] == doctest::Approx(BoxSum(d, cv::Rect(0, 0, 88, 72))).epsilon(1e-6));
}

TEST_CASE("the cubic target reproduces the reference target_cubic vectors" * doctest::test_suite("optional")) {
  const fs::path data = test::SharedData();
  CSR_SKIP_UNLESS(!data.empty(), csr::test::kNeedShared, "../shared/data not present");
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(data / "reference")) {
    if (e.path().extension() != ".h5" || e.path().parent_path().filename() == "reference") continue;
    CAPTURE(e.path().string());
    h5::Lock lock;
    const h5::Hid f_file = h5::OpenRead(e.path().string());
    const hid_t f = f_file.get();
    if (!h5::Exists(f, "target_cubic")) continue;
    const cv::Mat density = h5::ReadMat(f, "density", e.path().string());
    cv::Mat ref = h5::ReadMat(f, "target_cubic", e.path().string());
    const cv::Mat got = TargetCubic(density, cv::Rect(0, 0, density.cols, density.rows));
    REQUIRE(got.size() == ref.size());
    if (ref.depth() == CV_32F) {
      CHECK(cv::norm(got, ref, cv::NORM_INF) == 0.0);  // bit-exact, as cv2 computes it
    } else {
      ref.convertTo(ref, CV_32F);
      CHECK(cv::norm(got, ref, cv::NORM_INF) <= 1e-6 * std::max(1.0, cv::norm(ref, cv::NORM_INF)));
    }
    // The original target's sum drifts from the true count; sum8 does not.
    CHECK(cv::sum(SumBlocks8(density, cv::Rect(0, 0, density.cols / 8 * 8, density.rows / 8 * 8)))[0] ==
          doctest::Approx(BoxSum(density, cv::Rect(0, 0, density.cols / 8 * 8, density.rows / 8 * 8))).epsilon(1e-6));
    ++files;
  }
  CHECK(files >= 4);
}

TEST_CASE("counts include duplicates and points a fraction of a pixel from the edge") {
  const HeadPixels heads = ToHeadPixels({{3.2, 4.9}, {3.7, 4.1}, {99.8, 10.0}, {-0.5, 3.0}, {50, 200}}, 100, 50);
  CHECK(CountInBox(heads, cv::Rect(0, 0, 100, 50)) == 3);
  CHECK(CountInBox(heads, cv::Rect(0, 0, 8, 8)) == 2);
  CHECK(CountInBox(heads, cv::Rect(96, 8, 4, 8)) == 1);
  CHECK(CountInBox(heads, cv::Rect(0, 0, 99, 50)) == 2);
}

// ------------------------------------------------------------------ the build

TEST_CASE("records: nine per train image, whole test images, exact pixels, targets and counts") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", kSmallSet);
  const CropShardsReport report = BuildShards(OptionsFor(tmp));
  CHECK(report.images == 6);
  CHECK(report.skipped_images == 1);
  CHECK(report.train_records == 27);
  CHECK(report.test_records == 2);
  ShardSet set(tmp / "shards");
  REQUIRE(set.size("train") == 27);
  REQUIRE(set.size("test") == 2);
  for (const std::string split : {"train", "test"}) {
    for (int64_t i = 0; i < set.size(split); ++i) {
      CAPTURE(split);
      CAPTURE(i);
      const ShardRecord r = set.Read(split, i);
      cv::Mat src = cv::imread(ImagePath(tmp, split, r.source).string(), cv::IMREAD_COLOR);  // gray -> 3 equal channels
      cv::cvtColor(src, src, cv::COLOR_BGR2RGB);
      const cv::Rect box(r.box[0], r.box[1], r.box[2], r.box[3]);
      REQUIRE(r.image.size() == box.size());
      CHECK(cv::norm(r.image, src(box), cv::NORM_INF) == 0.0);
      const cv::Mat density = DensityOf(DensityPath(tmp, split, r.source));
      CHECK(r.density_sum == doctest::Approx(BoxSum(density, box)).epsilon(1e-9));
      CHECK(r.count == CountInBox(HeadsOf(tmp, split, r.source, src.cols, src.rows), box));
      CHECK(r.target.rows == box.height / 8);
      CHECK(r.target.cols == box.width / 8);
      CHECK(cv::norm(r.target, SumBlocks8(density, box), cv::NORM_INF) == 0.0);
      if (split == "train") {
        CHECK(r.crop == i % 9);
        CHECK(cv::sum(r.target)[0] == doctest::Approx(r.density_sum).epsilon(1e-5));
      } else {
        CHECK(r.crop == -1);
        CHECK(box == cv::Rect(0, 0, src.cols, src.rows));
        CHECK(r.count == HeadsOf(tmp, split, r.source, src.cols, src.rows).inside);
      }
    }
  }
  CHECK(set.Info("train", 9).source == "IMG_2.jpg");
  CHECK(set.Info("train", 18).source == "IMG_3.jpg");  // IMG_4 (14 px wide) was skipped
}

TEST_CASE("the manifest records provenance, gt_gen settings, shards with checksums and totals") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", kSmallSet);
  CropShardsOptions o = OptionsFor(tmp);
  o.seed = 99;
  BuildShards(o);
  const auto m = nlohmann::json::parse(ReadTextFile(tmp / "shards" / kManifestName));
  CHECK(m["format_version"] == kShardFormatVersion);
  CHECK(m["source"]["part"] == "A");
  CHECK(fs::equivalent(m["source"]["root"].get<std::string>(), tmp / "data"));
  CHECK(m["settings"]["seed"] == 99);
  CHECK(m["settings"]["random_crops"] == 5);
  CHECK(m["ground_truth"]["mode"] == "reference");
  CHECK(m["ground_truth"]["kernel"] == "adaptive");
  CHECK(m["ground_truth"]["border"] == "constant");
  CHECK(m["ground_truth"]["sigma_rule"].get<std::string>().find("adaptive") == 0);
  CHECK(m["splits"]["train"]["records"] == 27);
  CHECK(m["splits"]["train"]["skipped_images"] == 1);
  // A shard holds whole images and closes once it has 7 or more records: 9 + 9 + 9.
  CHECK(m["splits"]["train"]["shards"].size() == 3);
  CHECK(m["splits"]["train"]["shards"][0]["records"] == 9);
  CHECK(m["splits"]["test"]["target"] == "sum8");
  CHECK(m["totals"]["records"] == 29);
  uint64_t bytes = 0;
  for (const std::string split : {"train", "test"}) {
    for (const auto& s : m["splits"][split]["shards"]) {
      const fs::path p = tmp / "shards" / s["file"].get<std::string>();
      CHECK(FileCrc32(p) == s["crc32"].get<uint32_t>());
      CHECK(fs::file_size(p) == s["bytes"].get<uint64_t>());
      bytes += s["bytes"].get<uint64_t>();
    }
  }
  CHECK(m["totals"]["bytes"] == bytes);
}

TEST_CASE("one and two threads give byte-identical shards") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", kSmallSet);
  CropShardsOptions o = OptionsFor(tmp, "one");
  o.threads = 1;
  BuildShards(o);
  o = OptionsFor(tmp, "two");
  o.threads = 2;
  BuildShards(o);
  const auto a = nlohmann::json::parse(ReadTextFile(tmp / "one" / kManifestName));
  const auto b = nlohmann::json::parse(ReadTextFile(tmp / "two" / kManifestName));
  CHECK(a["splits"] == b["splits"]);  // same files, sizes and checksums
  ShardSet sa(tmp / "one"), sb(tmp / "two");
  for (int64_t i = 0; i < sa.size("train"); ++i) {
    const ShardRecord x = sa.Read("train", i), y = sb.Read("train", i);
    CHECK(x.box == y.box);
    CHECK(cv::norm(x.image, y.image, cv::NORM_INF) == 0.0);
    CHECK(cv::norm(x.target, y.target, cv::NORM_INF) == 0.0);
  }
}

TEST_CASE("another seed moves the random crops but not the quarters") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 300, 200, 20}});
  CropShardsOptions o = OptionsFor(tmp, "a");
  BuildShards(o);
  o = OptionsFor(tmp, "b");
  o.seed = 12345;
  BuildShards(o);
  ShardSet a(tmp / "a"), b(tmp / "b");
  for (int i = 0; i < 4; ++i) CHECK(a.Read("train", i).box == b.Read("train", i).box);
  int moved = 0;
  for (int i = 4; i < 9; ++i) moved += a.Read("train", i).box != b.Read("train", i).box;
  CHECK(moved >= 4);
}

TEST_CASE("--target cubic stores the original's resized targets for training, sum8 for testing") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 240, 160, 40}, {"test", 120, 96, 10}});
  CropShardsOptions o = OptionsFor(tmp);
  o.target = TargetRule::kCubic;
  o.compress = 4;
  BuildShards(o);
  ShardSet set(tmp / "shards");
  const cv::Mat density = DensityOf(DensityPath(tmp, "train", "IMG_1.jpg"));
  for (int i = 0; i < 9; ++i) {
    const ShardRecord r = set.Read("train", i);
    const cv::Rect box(r.box[0], r.box[1], r.box[2], r.box[3]);
    CHECK(cv::norm(r.target, TargetCubic(density, box), cv::NORM_INF) == 0.0);
  }
  const ShardRecord t = set.Read("test", 0);
  CHECK(cv::norm(t.target, SumBlocks8(DensityOf(DensityPath(tmp, "test", "IMG_1.jpg")), cv::Rect(0, 0, 120, 96)),
                 cv::NORM_INF) == 0.0);
  CHECK(set.manifest()["splits"]["train"]["target"] == "cubic");
}

TEST_CASE("density maps without gt_gen's attributes (the Python script's) still work") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 64, 64, 5}}, /*densities=*/false);
  cv::Mat d(64, 64, CV_32F, cv::Scalar(0.001f));
  {
    h5::Lock lock;
    const h5::Hid f_file = h5::Create(DensityPath(tmp, "train", "IMG_1.jpg").string());
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", d);
  }
  BuildShards(OptionsFor(tmp));
  const auto m = nlohmann::json::parse(ReadTextFile(tmp / "shards" / kManifestName));
  CHECK(m["ground_truth"]["mode"] == "unknown");
  CHECK(m["ground_truth"]["maps_without_settings"] == 1);
  CHECK(ShardSet(tmp / "shards").Read("train", 0).density_sum == doctest::Approx(32 * 32 * 0.001).epsilon(1e-5));
}

TEST_CASE("maps from an older gt_gen (density_sum but no density_crc32) still load, checked by their sum") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 64, 64, 5}});
  const fs::path p = DensityPath(tmp, "train", "IMG_1.jpg");
  {
    h5::Lock lock;
    const h5::Hid f(H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    REQUIRE(h5::HasAttr(f.get(), kDensityCrcAttr));
    REQUIRE(H5Adelete(f.get(), kDensityCrcAttr) >= 0);
  }
  BuildShards(OptionsFor(tmp));
  CHECK(ShardSet(tmp / "shards").size("train") == 9);
  // ... and a changed sum is still caught.
  cv::Mat d = DensityOf(p);
  d *= 2.0;
  RewriteDensity(p, d);
  CropShardsOptions o = OptionsFor(tmp);
  o.overwrite = true;
  ExpectError([&] { BuildShards(o); }, {p.string(), "density_sum"});
}

TEST_CASE("the original's scipy maps (reference vectors) pass the density checks" * doctest::test_suite("optional")) {
  const fs::path data = test::SharedData();
  CSR_SKIP_UNLESS(!data.empty(), csr::test::kNeedShared, "../shared/data not present");
  test::TempDir tmp;
  fs::copy(data / "ShanghaiTech", tmp / "data", fs::copy_options::recursive);
  for (const std::string part : {"A", "B"}) {
    CAPTURE(part);
    GtGenOptions g;
    g.root = (tmp / "data").string();
    g.part = part;
    g.quiet = true;
    REQUIRE(GenerateGroundTruth(g).failures.empty());
    int replaced = 0;
    for (const auto& e : fs::recursive_directory_iterator(data / "reference" / ("part_" + part + "_final"))) {
      if (e.path().extension() != ".h5") continue;
      const fs::path split = e.path().parent_path().filename();  // train_data / test_data
      const fs::path dst = tmp / "data" / ("part_" + part + "_final") / split / "ground_truth" / e.path().filename();
      fs::copy_file(e.path(), dst, fs::copy_options::overwrite_existing);
      ++replaced;
    }
    REQUIRE(replaced > 0);
    CropShardsOptions o;
    o.root = (tmp / "data").string();
    o.part = part;
    o.out = (tmp / ("shards_" + part)).string();
    o.quiet = true;
    CHECK_NOTHROW(BuildShards(o));
  }
}

// ------------------------------------------------------------------ the tool

TEST_CASE("--inspect prints totals and per-split statistics; --export writes the PNGs") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", kSmallSet);
  BuildShards(OptionsFor(tmp));
  std::ostringstream out;
  InspectShards((tmp / "shards").string(), true, out);
  const std::string text = out.str();
  CHECK(text.find("totals: 29 records") != std::string::npos);
  CHECK(text.find("train: 27 records from 4 images (1 skipped)") != std::string::npos);
  CHECK(text.find("test: 2 records") != std::string::npos);
  CHECK(text.find("count per record: min") != std::string::npos);
  CHECK(text.find("checksums: every shard matches") != std::string::npos);

  std::vector<std::string> err;
  REQUIRE(RunTool("--inspect " + (tmp / "shards").string() + " --export 10 --out " + (tmp / "look").string(), &err,
                  tmp) == 0);
  const cv::Mat image = cv::imread((tmp / "look" / "train-10-image.png").string());
  const cv::Mat heat = cv::imread((tmp / "look" / "train-10-target.png").string());
  const ShardRecord r = ShardSet(tmp / "shards").Read("train", 10);
  CHECK(image.cols == r.image.cols);
  CHECK(image.rows == r.image.rows);
  CHECK(heat.size() == image.size());
  CHECK(fs::exists(tmp / "look" / "train-10-overlay.png"));
}

TEST_CASE("a missing density map: made in memory by default, with --density maps an error naming gt_gen's command") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 64, 64, 5}, {"train", 64, 64, 5}});
  fs::remove(DensityPath(tmp, "train", "IMG_2.jpg"));
  std::vector<std::string> err;
  CHECK(RunTool("--density maps --root " + (tmp / "data").string() + " --out " + (tmp / "s").string(), &err, tmp) == 1);
  CheckOneErrorLine(err, "IMG_2.h5", "gt_gen --root " + (tmp / "data").string() + " --part A");
  CHECK_FALSE(fs::exists(tmp / "s" / kManifestName));
  CHECK(RunTool("--root " + (tmp / "data").string() + " --out " + (tmp / "s").string(), &err, tmp) == 0);
  CHECK(ShardSet(tmp / "s").size("train") == 18);
}

TEST_CASE("bad input gives one error line naming the file, a non-zero exit and no manifest") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}, {"train", 120, 64, 8}, {"test", 64, 64, 5}});
  const fs::path bad_density = DensityPath(tmp, "train", "IMG_2.jpg");
  const fs::path image = ImagePath(tmp, "train", "IMG_2.jpg");
  const std::string saved_density = ReadTextFile(bad_density), saved_image = ReadTextFile(image);
  const std::string args = "--records-per-shard 2 --root " + (tmp / "data").string() + " --out " + (tmp / "s").string();
  auto restore = [&] {
    std::ofstream(bad_density, std::ios::binary) << saved_density;
    std::ofstream(image, std::ios::binary) << saved_image;
  };
  std::vector<std::string> err;

  SUBCASE("a density map whose shape differs from its image") {
    h5::Lock lock;  // this process only: the tool runs in its own
    h5::Hid f_file = h5::Create(bad_density.string());
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", cv::Mat(64, 121, CV_32F, cv::Scalar(0)));
    REQUIRE(f_file.Close());
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "121x64 but its image IMG_2.jpg is 120x64");
  }
  SUBCASE("a truncated density map") {
    fs::resize_file(bad_density, fs::file_size(bad_density) / 2);
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "corrupt or truncated");
  }
  SUBCASE("a density file that is not HDF5") {
    std::ofstream(bad_density, std::ios::binary) << "this is not an HDF5 file";
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "HDF5");
  }
  SUBCASE("a density file without the density dataset") {
    h5::Lock lock;  // this process only: the tool runs in its own
    h5::Hid f_file = h5::Create(bad_density.string());
    const hid_t f = f_file.get();
    h5::WriteMat(f, "something_else", cv::Mat(64, 120, CV_32F, cv::Scalar(0)));
    REQUIRE(f_file.Close());
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "density");
  }
  SUBCASE("a density map with 4 KB of flipped bytes") {
    const int64_t offset = DensityDataOffset(bad_density);
    std::string bytes = ReadTextFile(bad_density);
    REQUIRE(offset + 4096 + 4096 <= static_cast<int64_t>(bytes.size()) + 4096);
    for (int64_t i = offset; i < std::min<int64_t>(offset + 4096, bytes.size()); ++i) bytes[i] = ~bytes[i];
    std::ofstream(bad_density, std::ios::binary) << bytes;
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "corrupt density map");
  }
  SUBCASE("a density map whose values moved but whose sum stayed: the CRC-32 catches it") {
    cv::Mat d = DensityOf(bad_density);
    cv::Point hot;
    cv::minMaxLoc(d, nullptr, nullptr, nullptr, &hot);
    std::swap(d.at<float>(hot), d.at<float>(0, 0));
    RewriteDensity(bad_density, d);
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "CRC-32");
  }
  SUBCASE("a map without gt_gen's attributes that sums to more than the annotated heads") {
    h5::Lock lock;
    h5::Hid f_file = h5::Create(bad_density.string());
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", cv::Mat(64, 120, CV_32F, cv::Scalar(0.01f)));  // 76.8 for 10 heads
    REQUIRE(f_file.Close());
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "more than the 10 annotated heads");
  }
  SUBCASE("a map with a clearly negative value") {
    cv::Mat d = DensityOf(bad_density);
    d.at<float>(3, 3) = -0.5f;
    {
      h5::Lock lock;
      const h5::Hid f_file = h5::Create(bad_density.string());
      const hid_t f = f_file.get();
      h5::WriteMat(f, "density", d);
    }
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.h5", "a value of -0.5");
  }
  SUBCASE("an unreadable (truncated) image") {
    fs::resize_file(image, fs::file_size(image) / 2);
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.jpg", "truncated");
  }
  SUBCASE("an image that is not an image") {
    std::ofstream(image, std::ios::binary) << "garbage";
    CHECK(RunTool(args, &err, tmp) == 1);
    CheckOneErrorLine(err, "IMG_2.jpg", "image");
  }
  CHECK_FALSE(fs::exists(tmp / "s" / kManifestName));
  // Nothing of the failed run is left: no shard and no temporary.
  if (fs::exists(tmp / "s" / "train")) CHECK(fs::is_empty(tmp / "s" / "train"));
  restore();
  CHECK(RunTool(args, &err, tmp) == 0);
  CHECK(ShardSet(tmp / "s").size("train") == 18);
}

TEST_CASE("an image without annotation is an error, an annotation without image a warning, as in gt_gen") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}, {"test", 64, 64, 5}});
  const fs::path gt = PartDir(tmp) / "train_data" / "ground_truth";
  fs::copy(gt / "GT_IMG_1.mat", gt / "GT_IMG_7.mat");  // orphan
  const std::string args = "--root " + (tmp / "data").string() + " --out " + (tmp / "s").string();
  std::vector<std::string> err;
  CHECK(RunTool(args, &err, tmp) == 0);
  bool warned = false;
  for (const auto& line : err) warned |= line.find("GT_IMG_7.mat: annotation has no image") != std::string::npos;
  CHECK(warned);
  fs::copy(ImagePath(tmp, "train", "IMG_1.jpg"), ImagePath(tmp, "train", "IMG_5.jpg"));  // no GT_IMG_5.mat
  CHECK(RunTool(args + " --overwrite", &err, tmp) == 1);
  CheckOneErrorLine(err, "IMG_5.jpg", "image has no annotation");
}

TEST_CASE("an empty images folder is one error line and exit 1") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}});
  fs::remove(ImagePath(tmp, "train", "IMG_1.jpg"));
  std::vector<std::string> err;
  CHECK(RunTool("--root " + (tmp / "data").string() + " --out " + (tmp / "s").string(), &err, tmp) == 1);
  CheckOneErrorLine(err, "part_A_final", "no images");
}

TEST_CASE("out-of-range options are usage errors") {
  test::TempDir tmp;
  std::vector<std::string> err;
  for (const char* bad : {"--threads 100000", "--threads -1", "--records-per-shard 0", "--records-per-shard 2000000000",
                          "--random-crops 1001", "--compress 10"}) {
    CAPTURE(bad);
    CHECK(RunTool(std::string(bad) + " --root " + (tmp / "none").string(), &err, tmp) == 2);
  }
}

TEST_CASE("an interrupted run's leftovers are cleared and the rerun starts clean") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}, {"test", 64, 64, 5}});
  const fs::path out = tmp / "s";
  MakeDirs(out / "train");
  // What a killed run leaves: a finished shard from its own numbering and a temporary.
  std::ofstream(out / "train" / "shard-00007.h5") << "stale";
  std::ofstream(out / "train" / "shard-00001.h5.tmp-123-0") << "partial";
  std::ofstream(out / "manifest.json.tmp-123-1") << "{\"format\":";  // killed while writing the manifest
  CropShardsOptions o = OptionsFor(tmp, "s");
  BuildShards(o);
  CHECK_FALSE(fs::exists(out / "train" / "shard-00007.h5"));
  CHECK_FALSE(fs::exists(out / "train" / "shard-00001.h5.tmp-123-0"));
  CHECK_FALSE(fs::exists(out / "manifest.json.tmp-123-1"));
  ShardSet set(out);
  CHECK(set.size("train") == 9);
  set.Verify();
}

TEST_CASE("an output folder holding a different shard set is refused unless --overwrite") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}, {"test", 64, 64, 5}});
  const std::string base = "--quiet --root " + (tmp / "data").string() + " --out " + (tmp / "s").string();
  std::vector<std::string> err;
  REQUIRE(RunTool(base + " --seed 1", &err, tmp) == 0);
  const std::string before = ReadTextFile(tmp / "s" / kManifestName);
  CHECK(RunTool(base + " --seed 2", &err, tmp) == 1);
  CheckOneErrorLine(err, (tmp / "s").string(), "different shard set");
  CHECK(ReadTextFile(tmp / "s" / kManifestName) == before);  // untouched
  CHECK(RunTool(base + " --seed 1", &err, tmp) == 0);        // the same set may be rebuilt
  CHECK(RunTool(base + " --seed 2 --overwrite", &err, tmp) == 0);
  CHECK(nlohmann::json::parse(ReadTextFile(tmp / "s" / kManifestName))["settings"]["seed"] == 2);
}

TEST_CASE("a non-empty folder that is not a shard set is refused unless --overwrite, which keeps foreign files") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}});
  MakeDirs(tmp / "s");
  std::ofstream(tmp / "s" / "notes.txt") << "mine";
  const std::string base = "--quiet --root " + (tmp / "data").string() + " --out " + (tmp / "s").string();
  std::vector<std::string> err;
  CHECK(RunTool(base, &err, tmp) == 1);
  CheckOneErrorLine(err, (tmp / "s").string(), "not empty");
  CHECK(RunTool(base + " --overwrite", &err, tmp) == 0);
  CHECK(ReadTextFile(tmp / "s" / "notes.txt") == "mine");
  CHECK(fs::exists(tmp / "s" / kManifestName));
}

TEST_CASE("a full disk gives a clean error and no manifest" * doctest::test_suite("optional")) {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 400, 300, 20}, {"train", 400, 300, 20}, {"test", 300, 200, 5}});
  const fs::path mnt = tmp / "tiny";
  MakeDirs(mnt);
  CSR_SKIP_UNLESS(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") == 0, csr::test::kNeedRoot,
                  "cannot mount a small tmpfs here (needs root)");
  std::vector<std::string> err;
  const int rc = RunTool("--root " + (tmp / "data").string() + " --out " + (mnt / "s").string(), &err, tmp);
  const bool manifest = fs::exists(mnt / "s" / kManifestName);
  bool temporaries = false;
  if (fs::exists(mnt / "s" / "train")) {
    for (const auto& e : fs::directory_iterator(mnt / "s" / "train")) temporaries |= IsAtomicTemp(e.path());
  }
  ::umount(mnt.c_str());
  CHECK(rc == 1);
  CheckOneErrorLine(err, "shard-00000.h5", "No space left on device");
  CHECK_FALSE(manifest);
  CHECK_FALSE(temporaries);
}

TEST_CASE("a corrupted shard is reported with a clear error by --inspect --verify") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}});
  BuildShards(OptionsFor(tmp));
  const fs::path shard = tmp / "shards" / "train" / "shard-00000.h5";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) / 2));
    f.write("\x01\x02\x03\x04", 4);
  }
  std::vector<std::string> err;
  CHECK(RunTool("--inspect " + (tmp / "shards").string() + " --verify", &err, tmp) == 1);
  CheckOneErrorLine(err, "shard-00000.h5", "checksum mismatch");
}

TEST_CASE("the h5py snippet in docs/shard_format.md reads a shard set" * doctest::test_suite("optional")) {
  const fs::path doc = fs::path(CSR_SOURCE_DIR) / "docs" / "shard_format.md";
  REQUIRE(fs::exists(doc));
  CSR_SKIP_UNLESS(test::Run(test::Python() + " -c 'import h5py, numpy'") == 0, csr::test::kNeedPython,
                  "needs /usr/bin/python3 with h5py");
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", {{"train", 96, 80, 8}, {"test", 64, 64, 5}});
  CropShardsOptions o = OptionsFor(tmp);
  o.compress = 1;
  BuildShards(o);
  const std::string text = ReadTextFile(doc);
  const size_t begin = text.find("```python\n");
  REQUIRE(begin != std::string::npos);
  const size_t end = text.find("```", begin + 10);
  std::ofstream(tmp / "snippet.py") << text.substr(begin + 10, end - begin - 10);
  const fs::path log = tmp / "snippet.txt";
  const int rc = test::Run("cd " + tmp.path().string() + " && " + test::Python() + " snippet.py shards", log);
  CHECK_MESSAGE(rc == 0, ReadAll(log));
  CHECK(ReadAll(log).find("train 9 records") != std::string::npos);
}

}  // namespace
}  // namespace csr

namespace csr {
namespace {

// Every record of both splits, field by field.
void CheckSameRecords(const fs::path& a, const fs::path& b) {
  const ShardSet x(a), y(b);
  for (const char* split : {"train", "test"}) {
    CAPTURE(split);
    REQUIRE(x.size(split) == y.size(split));
    for (int64_t i = 0; i < x.size(split); ++i) {
      const ShardRecord r = x.Read(split, i), s = y.Read(split, i);
      CHECK(r.source == s.source);
      CHECK(r.box == s.box);
      CHECK(r.count == s.count);
      CHECK(r.density_sum == s.density_sum);
      CHECK(r.crop == s.crop);
      CHECK(r.scale == s.scale);
      REQUIRE(r.image.size() == s.image.size());
      CHECK(cv::norm(r.image, s.image, cv::NORM_INF) == 0);
      REQUIRE(r.target.size() == s.target.size());
      CHECK(std::memcmp(r.target.data, s.target.data, r.target.total() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("densities made in memory from the annotations give the same records as gt_gen's maps") {
  for (const char* part : {"A", "B"}) {
    CAPTURE(part);
    test::TempDir tmp;
    SyntheticOptions syn;
    syn.out = (tmp / "data").string();
    syn.part = part;
    syn.train_images = 3;
    syn.test_images = 2;
    syn.min_size = 96;
    syn.max_size = 200;
    GenerateSynthetic(syn);
    // From annotations only: no map exists yet.
    CropShardsOptions o = OptionsFor(tmp, "from_annotations");
    o.part = part;
    BuildShards(o);
    GtGenOptions g;
    g.root = (tmp / "data").string();
    g.part = part;
    g.quiet = true;
    REQUIRE(GenerateGroundTruth(g).failures.empty());
    o.out = (tmp / "from_maps").string();
    o.density_source = DensitySource::kMaps;
    BuildShards(o);
    CheckSameRecords(tmp / "from_annotations", tmp / "from_maps");
    o.out = (tmp / "forced").string();
    o.density_source = DensitySource::kAnnotations;
    BuildShards(o);
    CheckSameRecords(tmp / "forced", tmp / "from_maps");
  }
}

TEST_CASE("crop_shards --dataset builds shards straight from each layout's annotations") {
  for (DatasetKind kind :
       {DatasetKind::kQnrf, DatasetKind::kUcf50, DatasetKind::kJhu, DatasetKind::kNwpu, DatasetKind::kPoints}) {
    CAPTURE(Name(kind));
    test::TempDir tmp;
    SyntheticOptions syn;
    syn.out = (tmp / "data").string();
    syn.like = kind;
    const bool ucf50 = kind == DatasetKind::kUcf50;
    syn.train_images = ucf50 ? 45 : 3;  // UCF_CC_50 numbers all 50 1..50: fold 2 tests 11..20
    syn.test_images = ucf50 ? 5 : 2;
    syn.min_size = ucf50 ? 64 : 96;
    syn.max_size = ucf50 ? 96 : 160;
    const SyntheticSummary made = GenerateSynthetic(syn);
    CropShardsOptions o = OptionsFor(tmp);
    o.dataset = kind;
    if (ucf50) {
      ExpectError([&] { BuildShards(o); }, {"--fold", "cross-validated"});
      o.fold = 2;
    }
    const CropShardsReport r = BuildShards(o);
    const ShardSet set(tmp / "shards");
    const int train = ucf50 ? 40 : 3, test = ucf50 ? 10 : 2;
    CHECK(set.size("train") == train * 9);
    // Test: JHU's and the points' test split, NWPU's val (its test labels are withheld).
    CHECK(set.size("test") == test);
    const nlohmann::json m = nlohmann::json::parse(ReadTextFile(tmp / "shards" / "manifest.json"));
    CHECK(m["source"]["dataset"] == Name(kind));
    CHECK(m["source"]["eval_split"] == (kind == DatasetKind::kNwpu ? "val" : "test"));
    CHECK(r.images == train + test);
    int64_t heads = 0;
    for (const SyntheticImage& item : made.items) {
      if (!ucf50 && item.split != "train" && item.split != (kind == DatasetKind::kNwpu ? "val" : "test")) continue;
      heads += static_cast<int64_t>(item.points.size());
    }
    CHECK(heads > 0);
    int64_t counted = 0;
    for (int64_t i = 0; i < set.size("test"); ++i) counted += set.Info("test", i).count;
    CHECK(counted <= heads);
    if (kind == DatasetKind::kJhu || kind == DatasetKind::kNwpu) {
      // Train image 2 has nobody in it: nine records with a zero count and an all-zero target.
      for (int64_t i = 9; i < 18; ++i) {
        const ShardRecord z = set.Read("train", i);
        CHECK(z.count == 0);
        CHECK(z.density_sum == 0.0);
        CHECK(cv::countNonZero(z.target) == 0);
      }
    }
    if (kind == DatasetKind::kNwpu) {
      o.eval_split = "test";
      o.overwrite = true;
      ExpectError([&] { BuildShards(o); }, {"--eval-split", "no labels"});
    }
  }
}

TEST_CASE("gt_gen --dataset writes maps beside any layout's annotations; crop_shards reads them to the same records") {
  for (DatasetKind kind : {DatasetKind::kQnrf, DatasetKind::kJhu, DatasetKind::kNwpu, DatasetKind::kPoints}) {
    CAPTURE(Name(kind));
    test::TempDir tmp;
    SyntheticOptions syn;
    syn.out = (tmp / "data").string();
    syn.like = kind;
    syn.train_images = 2;
    syn.test_images = 2;
    syn.min_size = 80;
    syn.max_size = 128;
    GenerateSynthetic(syn);
    GtGenOptions g;
    g.dataset = kind;
    g.root = syn.out;
    g.quiet = true;
    const GtGenReport report = GenerateGroundTruth(g);
    REQUIRE(report.failures.empty());
    // NWPU-Crowd's test images have no labels: no map for them.
    CHECK(report.written == (kind == DatasetKind::kJhu ? 6 : 4));
    CropShardsOptions o = OptionsFor(tmp, "maps");
    o.dataset = kind;
    o.density_source = DensitySource::kMaps;
    if (o.ResolveSize().active()) {
      // gt_gen's maps are at the source size: rescaled images cannot use them.
      ExpectError([&] { BuildShards(o); }, {"--density", "source resolution"});
      o.size.min_side = o.size.max_side = o.size.max_short_side = 0;
    }
    BuildShards(o);
    o.out = (tmp / "annotations").string();
    o.density_source = DensitySource::kAnnotations;
    BuildShards(o);
    CheckSameRecords(tmp / "maps", tmp / "annotations");
  }
}

TEST_CASE("a version 2 shard set (tests/data/shards_v2) reads as the same records as today's version 3 set") {
  const fs::path v2 = fs::path(CSR_SOURCE_DIR) / "tests" / "data" / "shards_v2";
  REQUIRE(fs::exists(v2 / kManifestName));
  CHECK(nlohmann::json::parse(ReadTextFile(v2 / kManifestName))["format_version"] == 2);
  // The inputs it was made from (tests/data/README.md): make_synthetic
  // --images 2 --test-images 1 --min-size 64 --max-size 100 --min-heads 3
  // --max-heads 12 --seed 7, then crop_shards --compress 9 --density annotations.
  test::TempDir tmp;
  SyntheticOptions syn;
  syn.out = (tmp / "data").string();
  syn.train_images = 2;
  syn.test_images = 1;
  syn.min_size = 64;
  syn.max_size = 100;
  syn.min_heads = 3;
  syn.max_heads = 12;
  syn.seed = 7;
  GenerateSynthetic(syn);
  CropShardsOptions o = OptionsFor(tmp);
  o.records_per_shard = 256;
  o.compress = 9;
  o.density_source = DensitySource::kAnnotations;
  BuildShards(o);
  CHECK(nlohmann::json::parse(ReadTextFile(tmp / "shards" / kManifestName))["format_version"] == kShardFormatVersion);
  CheckSameRecords(v2, tmp / "shards");
  ShardSet(v2).Verify();
}

TEST_CASE("a shard set takes at most 1.25x the decoded training pixels plus targets") {
  test::TempDir tmp;
  SyntheticOptions syn;
  syn.out = (tmp / "data").string();
  syn.train_images = 4;
  syn.test_images = 1;
  GenerateSynthetic(syn);
  for (int compress : {0, 1}) {
    CAPTURE(compress);
    CropShardsOptions o = OptionsFor(tmp, StrCat("shards", compress));
    o.compress = compress;
    o.records_per_shard = 256;
    BuildShards(o);
    const ShardSet set(tmp / StrCat("shards", compress));
    const nlohmann::json& m = set.manifest();
    uint64_t decoded = 0;  // the train images' pixels, once, and the nine targets
    std::set<std::string> seen;
    for (int64_t i = 0; i < set.size("train"); ++i) {
      const ShardRecord r = set.Read("train", i);
      decoded += r.target.total() * sizeof(float);
      if (seen.insert(r.source).second) {
        const cv::Mat full =
            ReadImageRGB((tmp / "data" / "part_A_final" / "train_data" / "images" / r.source).string());
        decoded += full.total() * full.elemSize();
      }
    }
    const auto bytes = m["splits"]["train"]["bytes"].get<uint64_t>();
    CAPTURE(bytes);
    CAPTURE(decoded);
    CHECK(static_cast<double>(bytes) <= 1.25 * static_cast<double>(decoded));
    // Version 2 stored the nine crops' pixels: 2.25x the image.
    CHECK(static_cast<double>(bytes) < 0.6 * 2.25 * static_cast<double>(decoded));
  }
}

TEST_CASE("rescaled images: points move with the image, counts are kept, the factor is recorded") {
  test::TempDir tmp;
  SyntheticOptions syn;
  syn.out = (tmp / "data").string();
  syn.like = DatasetKind::kQnrf;
  syn.train_images = 2;
  syn.test_images = 2;
  syn.min_size = 96;
  syn.max_size = 160;
  const SyntheticSummary made = GenerateSynthetic(syn);
  CropShardsOptions o = OptionsFor(tmp);
  o.dataset = DatasetKind::kQnrf;  // auto: the shorter side raised to 512 (Bayesian-Loss)
  o.density.mode = DensityMode::kExactCount;
  BuildShards(o);
  const ShardSet set(tmp / "shards");
  CHECK(set.manifest()["settings"]["resize"] ==
        nlohmann::json({{"min_side", 512}, {"max_side", 0}, {"max_short_side", 2048}}));
  for (int64_t i = 0; i < set.size("test"); ++i) {
    const ShardRecord r = set.Read("test", i);
    const auto item = std::find_if(made.items.begin(), made.items.end(), [&](const SyntheticImage& it) {
      return it.split == "test" && it.image.filename() == r.source;
    });
    REQUIRE(item != made.items.end());
    CAPTURE(r.source);
    CHECK(std::min(r.box[2], r.box[3]) == 512);
    CHECK(r.scale[0] == doctest::Approx(static_cast<double>(r.box[2]) / item->width));
    CHECK(r.scale[1] == doctest::Approx(static_cast<double>(r.box[3]) / item->height));
    CHECK(r.scale[0] == doctest::Approx(512.0 / std::min(item->width, item->height)).epsilon(0.01));
    CHECK(r.count == static_cast<int64_t>(item->points.size()));  // every head still inside, none added
    // exact-count: the rescaled density still sums to the heads (up to the
    // last W mod 8 columns and H mod 8 rows the target leaves out).
    CHECK(r.density_sum == doctest::Approx(static_cast<double>(r.count)).epsilon(1e-4));
    CHECK(cv::sum(r.target)[0] <= r.count + 1e-3);
  }
  // A head's pixel in the rescaled image is its point times the factors:
  // the brightest pixel of the heads drawn in the synthetic image moves too.
  const ShardRecord r = set.Read("test", 0);
  const cv::Mat source = ReadImageRGB((tmp / "data" / "Test" / r.source).string());
  cv::Mat again;
  cv::resize(source, again, r.image.size(), 0, 0, cv::INTER_CUBIC);
  CHECK(cv::norm(again, r.image, cv::NORM_INF) == 0);  // the same pixels as a plain bicubic upscale

  // Train records: nine boxes of the rescaled image, all with its factor.
  const RecordInfo info = set.Info("train", 0);
  CHECK(info.scale[0] > 3.0);
  CHECK(std::min(info.width, info.height) == 256);  // half the 512-px shorter side
}

TEST_CASE("bad size limits are refused naming the option") {
  test::TempDir tmp;
  test::MakeFixture(tmp / "data", kSmallSet);
  CropShardsOptions o = OptionsFor(tmp);
  o.size.min_side = 2048;
  o.size.max_side = 1024;
  ExpectError([&] { BuildShards(o); }, {"--min-side", "larger than --max-side"});
  o.size.max_side = 20000;
  ExpectError([&] { BuildShards(o); }, {"--max-side", "20000"});
  // A long thin image raised to the minimum would be too large: one error naming it.
  o.size.max_side = std::nullopt;
  o.size.min_side = 16384;
  ExpectError([&] { BuildShards(o); }, {"IMG_", "over 16384"});
  CHECK_FALSE(fs::exists(tmp / "shards" / kManifestName));
}

}  // namespace
}  // namespace csr
