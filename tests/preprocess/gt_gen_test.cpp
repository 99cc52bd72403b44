#include "preprocess/gt_gen.h"

#include <cmath>
#include <fstream>
#include <limits>

#include <unistd.h>
#include <sys/mount.h>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "common/io/mat_io.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

using Points = std::vector<std::array<double, 2>>;
using test::ExpectError;

// A one-split ShanghaiTech-layout dataset written image by image.
struct MiniDataset {
  test::TempDir tmp;
  fs::path root = tmp.path() / "ShanghaiTech";

  fs::path Dir(const std::string& what, const std::string& split = "train") const {
    return root / "part_A_final" / (split + "_data") / what;
  }
  void Add(const std::string& stem, int w, int h, const Points& pts, const std::string& split = "train") {
    MakeDirs(Dir("images", split));
    MakeDirs(Dir("ground_truth", split));
    cv::Mat img(h, w, CV_8UC3, cv::Scalar(90, 120, 150));
    REQUIRE(cv::imwrite((Dir("images", split) / (stem + ".jpg")).string(), img));
    WriteAnnotation((Dir("ground_truth", split) / ("GT_" + stem + ".mat")).string(), pts);
  }
  fs::path Density(const std::string& stem, const std::string& split = "train") const {
    return Dir("ground_truth", split) / (stem + ".h5");
  }
  cv::Mat Read(const std::string& stem, const std::string& split = "train") const {
    const std::string p = Density(stem, split).string();
    h5::Lock lock;  // only around the read: the tools lock from their own threads
    return h5::ReadMat2f(h5::OpenRead(p).get(), "density", p);
  }
  GtGenOptions Options() const {
    GtGenOptions o;
    o.root = root.string();
    o.quiet = true;
    return o;
  }
};

Points Grid(int n, double step, double offset = 3.5) {
  Points p;
  for (int i = 0; i < n; ++i) p.push_back({offset + step * (i % 7), offset + step * (i / 7)});
  return p;
}

int RunCli(std::vector<std::string> args) {
  std::vector<const char*> argv = {"gt_gen"};
  for (auto& a : args) argv.push_back(a.c_str());
  return RunGtGen(static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("gt_gen reproduces the reference density maps of real images, Part A and Part B" *
          doctest::test_suite("optional")) {
  const fs::path shared = test::SharedData();
  CSR_SKIP_UNLESS(!shared.empty(), csr::test::kNeedShared, "../shared/data not present");
  test::TempDir tmp;
  fs::copy(shared / "ShanghaiTech", tmp / "ShanghaiTech", fs::copy_options::recursive);
  for (const std::string part : {"A", "B"}) {
    GtGenOptions o;
    o.root = (tmp / "ShanghaiTech").string();
    o.part = part;
    o.quiet = true;
    const GtGenReport r = GenerateGroundTruth(o);
    CHECK(r.failures.empty());
    CHECK(r.written == (part == "A" ? 7 : 5));
  }
  int compared = 0;
  for (const auto& e : fs::recursive_directory_iterator(shared / "reference")) {
    if (e.path().extension() != ".h5" || e.path().filename().string().rfind("IMG_", 0) != 0) continue;
    const fs::path rel = fs::relative(e.path(), shared / "reference");  // part/split/IMG_n.h5
    const fs::path ours = tmp / "ShanghaiTech" / rel.parent_path() / "ground_truth" / rel.filename();
    CAPTURE(ours);
    h5::Lock lock;
    const cv::Mat ref = h5::ReadMat2f(h5::OpenRead(e.path().string()).get(), "density", e.path().string());
    const h5::Hid f_file = h5::OpenRead(ours.string());
    const hid_t f = f_file.get();
    const cv::Mat mine = h5::ReadMat2f(f, "density", ours.string());
    REQUIRE(mine.size() == ref.size());
    CHECK(cv::norm(mine, ref, cv::NORM_INF) <= 1e-6);
    CHECK(h5::GetAttrInt(f, "annotation_count", ours.string()) ==
          h5::GetAttrInt(h5::OpenRead(e.path().string()).get(), "annotation_count", e.path().string()));
    ++compared;
  }
  CHECK(compared == 5);
  // The original trainer's image lists: absolute paths of every image.
  const auto list = nlohmann::json::parse(ReadTextFile(tmp / "ShanghaiTech" / "part_A_train.json"));
  REQUIRE(list.size() == 5);
  CHECK(fs::path(list[0].get<std::string>()).is_absolute());
  CHECK(fs::exists(list[0].get<std::string>()));
}

TEST_CASE("maps carry their settings and are skipped when up to date, redone with --overwrite or new settings") {
  MiniDataset d;
  d.Add("IMG_1", 64, 48, Grid(10, 6));
  d.Add("IMG_2", 40, 30, {});
  GtGenOptions o = d.Options();
  GtGenReport r = GenerateGroundTruth(o);
  CHECK(r.written == 2);
  {
    h5::Lock lock;
    const h5::Hid f_file = h5::OpenRead(d.Density("IMG_1").string());
    const hid_t f = f_file.get();
    CHECK(h5::GetAttrString(f, "mode", "") == "reference");
    CHECK(h5::GetAttrString(f, "kernel", "") == "adaptive");
    CHECK(h5::GetAttrInt(f, "annotation_count", "") == 10);
    CHECK(h5::GetAttrString(f, "tool_version", "").find("gt_gen") != std::string::npos);
    const cv::Mat m = h5::ReadMat2f(f, "density", "");
    CHECK(h5::GetAttrInt(f, kDensityCrcAttr, "") == static_cast<int64_t>(DensityCrc32(m)));
    CHECK(h5::GetAttrDouble(f, "density_sum", "") == doctest::Approx(cv::sum(m)[0]));
  }

  r = GenerateGroundTruth(o);
  CHECK(r.written == 0);
  CHECK(r.up_to_date == 2);
  o.overwrite = true;
  CHECK(GenerateGroundTruth(o).written == 2);
  o.overwrite = false;
  o.density.mode = DensityMode::kExactCount;
  CHECK(GenerateGroundTruth(o).written == 2);
}

TEST_CASE("exact-count maps sum to the annotation count, duplicates and edge points included") {
  MiniDataset d;
  Points pts = Grid(20, 5, 0.2);
  pts.push_back({0.3, 0.4});    // same pixel as the first point
  pts.push_back({63.8, 47.9});  // the far corner
  d.Add("IMG_1", 64, 48, pts);
  GtGenOptions o = d.Options();
  o.density.mode = DensityMode::kExactCount;
  CHECK(GenerateGroundTruth(o).failures.empty());
  CHECK(cv::sum(d.Read("IMG_1"))[0] == doctest::Approx(22.0).epsilon(1e-4 / 22));
  o.density.mode = DensityMode::kReference;
  const GtGenReport r = GenerateGroundTruth(o);
  CHECK(r.merged == 1);
  CHECK(cv::sum(d.Read("IMG_1"))[0] < 21.0);
}

TEST_CASE("zero heads give an all-zero map; one head uses the wide single-head kernel") {
  MiniDataset d;
  d.Add("IMG_1", 50, 30, {});
  d.Add("IMG_2", 50, 30, {{25.5, 15.5}});
  CHECK(GenerateGroundTruth(d.Options()).failures.empty());
  CHECK(cv::countNonZero(d.Read("IMG_1")) == 0);
  const cv::Mat one = d.Read("IMG_2");
  CHECK(one.at<float>(15, 25) > 0);
  CHECK(cv::sum(one)[0] < 1.0);  // sigma (H+W)/8 = 10 on a 50x30 image: mass spills out
  CHECK(cv::sum(one)[0] > 0.5);
}

TEST_CASE("bad images are reported by name, the others still get their maps, and the exit code says so") {
  MiniDataset d;
  d.Add("IMG_1", 64, 48, Grid(10, 6));
  d.Add("IMG_2", 64, 48, Grid(10, 6));
  d.Add("IMG_3", 64, 48, {{5, 5}, {std::numeric_limits<double>::quiet_NaN(), 7}});
  d.Add("IMG_4", 64, 48, Grid(5, 6));
  d.Add("IMG_5", 64, 48, {{5, 5}, {-3, 7}, {64.0, 10}, {10, 48.2}});
  // IMG_2: a corrupt annotation; IMG_4: a truncated image; IMG_6: no annotation.
  { std::ofstream(d.Dir("ground_truth") / "GT_IMG_2.mat", std::ios::trunc) << "not a mat file"; }
  const fs::path img4 = d.Dir("images") / "IMG_4.jpg";
  fs::resize_file(img4, fs::file_size(img4) / 2);
  fs::copy(d.Dir("images") / "IMG_1.jpg", d.Dir("images") / "IMG_6.jpg");
  // An annotation without image: a warning, not a failure (as in crop_shards).
  fs::copy(d.Dir("ground_truth") / "GT_IMG_1.mat", d.Dir("ground_truth") / "GT_IMG_9.mat");

  const GtGenReport r = GenerateGroundTruth(d.Options());
  CHECK(r.written == 2);  // IMG_1 and IMG_5
  CHECK(r.outside == 3);  // IMG_5: negative x, x == W, y > H
  CHECK(r.orphan_annotations == 1);
  REQUIRE(r.failures.size() == 4);
  std::string all;
  for (const auto& [file, why] : r.failures) all += file + ": " + why + "\n";
  CHECK(all.find("GT_IMG_2.mat") != std::string::npos);
  CHECK(all.find("GT_IMG_3.mat: annotation 2 has a non-finite coordinate") != std::string::npos);
  CHECK(all.find("IMG_4.jpg: truncated") != std::string::npos);
  CHECK(all.find("IMG_6.jpg: image has no annotation") != std::string::npos);
  CHECK(!fs::exists(d.Density("IMG_2")));
  CHECK(!fs::exists(d.Density("IMG_3")));
  CHECK(fs::exists(d.Density("IMG_5")));
  // No temporaries left behind.
  for (const auto& e : fs::directory_iterator(d.Dir("ground_truth"))) CHECK(!IsAtomicTemp(e.path()));

  CHECK(RunCli({"--root", d.root.string(), "--quiet"}) == 1);
  CHECK_THROWS_AS(
      [&] {
        GtGenOptions o = d.Options();
        o.strict = true;
        GenerateGroundTruth(o);
      }(),
      Error);
}

TEST_CASE("a temporary left by an interrupted run is removed and never mistaken for a map") {
  MiniDataset d;
  d.Add("IMG_1", 32, 32, Grid(4, 5));
  const fs::path stale = d.Dir("ground_truth") / "IMG_1.h5.tmp-999-0";
  { std::ofstream(stale) << "half a file"; }
  // A kill while the image lists were written leaves their temporary in the
  // dataset root; other temporaries there are the user's and stay.
  const fs::path stale_list = d.root / "part_A_train.json.tmp-999-3";
  const fs::path users = d.root / "notes.txt.tmp-999-4";
  { std::ofstream(stale_list) << "[\"half"; }
  { std::ofstream(users) << "not ours"; }
  CHECK(GenerateGroundTruth(d.Options()).written == 1);
  CHECK(!fs::exists(stale));
  CHECK(!fs::exists(stale_list));
  CHECK(fs::exists(users));
  CHECK(fs::exists(d.root / "part_A_train.json"));
  CHECK(cv::sum(d.Read("IMG_1"))[0] > 3.0);
}

TEST_CASE("output does not depend on the thread count") {
  MiniDataset d;
  for (int i = 1; i <= 6; ++i) d.Add("IMG_" + std::to_string(i), 80 + 10 * i, 60, Grid(30 + i, 2.5 + i));
  GtGenOptions o = d.Options();
  o.threads = 1;
  GenerateGroundTruth(o);
  std::vector<cv::Mat> one;
  for (int i = 1; i <= 6; ++i) one.push_back(d.Read("IMG_" + std::to_string(i)));
  o.threads = 2;
  o.overwrite = true;
  GenerateGroundTruth(o);
  for (int i = 1; i <= 6; ++i) CHECK(cv::norm(one[i - 1], d.Read("IMG_" + std::to_string(i)), cv::NORM_INF) == 0);
}

TEST_CASE("the mirrored layout (part_A, ground-truth) works the same") {
  MiniDataset d;
  d.Add("IMG_1", 48, 48, Grid(8, 5));
  d.Add("IMG_1", 48, 48, Grid(8, 5), "test");
  fs::rename(d.Dir("ground_truth"), d.Dir("ground-truth"));
  fs::rename(d.root / "part_A_final", d.root / "part_A");
  const GtGenReport r = GenerateGroundTruth(d.Options());
  CHECK(r.written == 2);
  CHECK(fs::exists(d.root / "part_A" / "train_data" / "ground-truth" / "IMG_1.h5"));
  CHECK(fs::exists(d.root / "part_A_test.json"));
}

TEST_CASE("the command line rejects bad options with a usage error") {
  CHECK(RunCli({"--part", "C"}) == 2);
  CHECK(RunCli({"--sigma", "-1"}) == 2);
  // Out of the documented bounds (these used to segfault, throw a raw length
  // error or run for minutes), and NaN.
  for (const char* sigma : {"6e8", "5e8", "1e6", "10001", "0.05", "nan", "inf"}) {
    CAPTURE(sigma);
    CHECK(RunCli({"--kernel", "fixed", "--sigma", sigma}) == 2);
  }
  for (const char* beta : {"1e9", "11", "0", "1e-9", "nan"}) {
    CAPTURE(beta);
    CHECK(RunCli({"--beta", beta}) == 2);
  }
  CHECK(RunCli({"--neighbors", "0"}) == 2);
  CHECK(RunCli({"--neighbors", "101"}) == 2);
  CHECK(RunCli({"--threads", "-1"}) == 2);
  CHECK(RunCli({"--threads", "100000"}) == 2);
  CHECK(RunCli({"--no-such-flag"}) == 2);
  CHECK(RunCli({"--help"}) == 0);
  CHECK(RunCli({"--root", "/nonexistent/dataset"}) == 1);
}

TEST_CASE("the largest allowed sigma on a small image finishes at once, finite and in the image") {
  MiniDataset d;
  d.Add("IMG_1", 64, 48, Grid(10, 6));
  GtGenOptions o = d.Options();
  o.density.kernel = KernelRule::kFixed;
  o.density.sigma = 10000;
  for (const Border border : {Border::kConstant, Border::kReflect}) {
    CAPTURE(Name(border));
    o.density.border = border;
    o.overwrite = true;
    REQUIRE(GenerateGroundTruth(o).failures.empty());
    const cv::Mat m = d.Read("IMG_1");
    CHECK(cv::checkRange(m));
    if (border == Border::kReflect) CHECK(cv::sum(m)[0] == doctest::Approx(10.0).epsilon(1e-5));
  }
}

TEST_CASE("an empty images folder or a split without images is one clear error, exit 1") {
  MiniDataset d;
  d.Add("IMG_1", 32, 32, Grid(4, 5));
  fs::remove(d.Dir("images") / "IMG_1.jpg");
  ExpectError([&] { GenerateGroundTruth(d.Options()); }, {"part_A_final", "no images"});
  CHECK(RunCli({"--root", d.root.string(), "--quiet"}) == 1);
  CHECK(RunCli({"--root", d.root.string(), "--split", "train", "--quiet"}) == 1);
}

// Mounts a tmpfs of `options` over the existing folder `dir`, keeping its
// files; false when this machine cannot (not root). Unmounts when destroyed.
struct TmpfsOver {
  fs::path dir;
  bool mounted = false;
  TmpfsOver(const fs::path& d, const std::string& options) : dir(d) {
    const fs::path keep = dir.string() + ".keep";
    fs::rename(dir, keep);
    MakeDirs(dir);
    mounted = ::geteuid() == 0 && ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
    for (const auto& e : fs::directory_iterator(keep)) fs::copy(e.path(), dir / e.path().filename());
    fs::remove_all(keep);
  }
  ~TmpfsOver() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

TEST_CASE("a full disk with 2 threads fails image by image, naming each map, never crashing" *
          doctest::test_suite("optional")) {
  MiniDataset d;
  // Twelve Part-A-sized images: 3 MB maps each, about half fit in 20 MB.
  for (int i = 1; i <= 12; ++i) d.Add("IMG_" + std::to_string(i), 1024, 768, Grid(60, 13.0 + i));
  TmpfsOver tiny(d.Dir("ground_truth"), "size=20m");
  CSR_SKIP_UNLESS(tiny.mounted, csr::test::kNeedRoot, "cannot mount a 20 MB tmpfs (needs root)");
  GtGenOptions o = d.Options();
  o.threads = 2;
  for (int run = 0; run < 8; ++run) {
    CAPTURE(run);
    for (int i = 1; i <= 12; ++i) fs::remove(d.Density("IMG_" + std::to_string(i)));
    const GtGenReport r = GenerateGroundTruth(o);
    CHECK(r.written > 0);
    REQUIRE(!r.failures.empty());
    CHECK(r.written + static_cast<int64_t>(r.failures.size()) == 12);
    for (const auto& [file, why] : r.failures) {
      CAPTURE(file);
      CAPTURE(why);
      CHECK(fs::path(file).extension() == ".h5");  // the map itself, never its .tmp- file
      CHECK(why.find("no space left on device") != std::string::npos);
    }
    for (const auto& e : fs::directory_iterator(d.Dir("ground_truth"))) CHECK(!IsAtomicTemp(e.path()));
  }
}

TEST_CASE("a read-only output folder names the map and the reason" * doctest::test_suite("optional")) {
  MiniDataset d;
  d.Add("IMG_1", 64, 48, Grid(10, 6));
  TmpfsOver ro(d.Dir("ground_truth"), "size=4m");
  CSR_SKIP_UNLESS(ro.mounted, csr::test::kNeedRoot, "cannot mount a tmpfs (needs root)");
  REQUIRE(::mount("tmpfs", ro.dir.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") == 0);
  const GtGenReport r = GenerateGroundTruth(d.Options());
  REQUIRE(r.failures.size() == 1);
  CHECK(r.failures[0].first == d.Density("IMG_1").string());
  CHECK(r.failures[0].second.find("read-only file system") != std::string::npos);
}

}  // namespace
}  // namespace csr
