#include "preprocess/synthetic.h"

#include <doctest/doctest.h>

#include <limits>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <opencv2/imgcodecs.hpp>
#include <tbb/global_control.h>

#include "common/base/error.h"
#include "common/io/dataset.h"
#include "common/io/datasets.h"
#include "common/io/image_io.h"
#include "common/io/mat_io.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;

// Small and quick: a few tiny images.
SyntheticOptions Small(const fs::path& out, int64_t seed = 7) {
  SyntheticOptions o;
  o.out = out.string();
  o.train_images = 4;
  o.test_images = 2;
  o.seed = seed;
  o.min_size = 64;
  o.max_size = 160;
  o.min_heads = 10;
  o.max_heads = 120;
  return o;
}

std::string ReadBytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Relative path -> contents of every file under `dir`.
std::map<std::string, std::string> Snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = ReadBytes(e.path());
  }
  return files;
}

int RunMake(std::vector<std::string> args) {
  args.insert(args.begin(), "make_synthetic");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return RunMakeSynthetic(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("the official layout pairs every image with its annotation") {
  test::TempDir dir;
  const SyntheticSummary s = GenerateSynthetic(Small(dir.path()));
  CHECK(s.part_dir == dir.path() / "part_A_final");
  CHECK(s.images == 6);
  CHECK(s.train_images == 4);
  CHECK(s.test_images == 2);
  REQUIRE(s.items.size() == 6);
  const Discovery d = DiscoverPart(dir.path(), "A", "all");
  CHECK(d.samples.size() == 6);
  CHECK(d.unannotated_images.empty());
  CHECK(d.orphan_annotations.empty());
  CHECK(d.stray_files == 0);
  for (const Sample& smp : d.samples) {
    CHECK(smp.annotation.parent_path().filename() == "ground_truth");
    CHECK(fs::exists(smp.image));
  }
  CHECK(fs::exists(dir / "part_A_final/train_data/images/IMG_4.jpg"));
  CHECK(fs::exists(dir / "part_A_final/test_data/ground_truth/GT_IMG_2.mat"));
  int64_t heads = 0;
  for (const auto& item : s.items) heads += static_cast<int64_t>(item.points.size());
  CHECK(s.heads == heads);
}

TEST_CASE("the mirrored layout uses part_A and ground-truth and is discovered too") {
  test::TempDir dir;
  SyntheticOptions o = Small(dir.path());
  o.layout = "mirrored";
  GenerateSynthetic(o);
  CHECK(fs::is_directory(dir / "part_A/train_data/ground-truth"));
  CHECK(!fs::exists(dir / "part_A_final"));
  const Discovery d = DiscoverPart(dir.path(), "A", "all");
  CHECK(d.samples.size() == 6);
  CHECK(d.orphan_annotations.empty());
}

TEST_CASE("the .mat files hold exactly the generated points, and number equals their count") {
  test::TempDir dir;
  const SyntheticSummary s = GenerateSynthetic(Small(dir.path()));
  for (const auto& item : s.items) {
    INFO(item.annotation);
    const Annotation a = ReadAnnotation(item.annotation.string());
    CHECK(a.points == item.points);
    CHECK(a.number == static_cast<int64_t>(item.points.size()));
  }
}

TEST_CASE("images decode with the planned size, points lie inside, and Part A includes a grayscale image") {
  test::TempDir dir;
  const SyntheticSummary s = GenerateSynthetic(Small(dir.path()));
  int gray = 0;
  for (const auto& item : s.items) {
    INFO(item.image);
    const ImageSize size = ReadImageSize(item.image.string());
    CHECK(size.width == item.width);
    CHECK(size.height == item.height);
    CHECK(item.width >= 64);
    CHECK(item.width <= 160);
    const cv::Mat raw = cv::imread(item.image.string(), cv::IMREAD_UNCHANGED);
    REQUIRE(!raw.empty());
    CHECK(raw.channels() == (item.gray ? 1 : 3));
    gray += item.gray ? 1 : 0;
    CHECK(item.points.size() >= 10);
    CHECK(item.points.size() <= 120);
    for (const auto& p : item.points) {
      CHECK(p[0] > 0);
      CHECK(p[0] < item.width);
      CHECK(p[1] > 0);
      CHECK(p[1] < item.height);
    }
  }
  CHECK(gray >= 1);
  CHECK(s.items[2].gray);  // train IMG_3 is always grayscale in Part A
}

TEST_CASE("the same seed gives byte-identical files; another seed gives different ones") {
  test::TempDir a, b, c;
  GenerateSynthetic(Small(a.path(), 11));
  GenerateSynthetic(Small(b.path(), 11));
  GenerateSynthetic(Small(c.path(), 12));
  const auto fa = Snapshot(a.path()), fb = Snapshot(b.path()), fc = Snapshot(c.path());
  CHECK(fa.size() == 13);  // 6 images, 6 annotations, the marker
  CHECK(fa == fb);
  int differing = 0;
  for (const auto& [name, bytes] : fa) {
    if (name.find("IMG_") != std::string::npos) differing += (fc.count(name) == 0 || fc.at(name) != bytes) ? 1 : 0;
  }
  CHECK(differing == 12);
}

TEST_CASE("Part B defaults to 1024x768 colour images") {
  test::TempDir dir;
  SyntheticOptions o;
  o.out = dir.path().string();
  o.part = "B";
  o.train_images = 1;
  o.test_images = 1;
  o.max_heads = 40;
  const SyntheticSummary s = GenerateSynthetic(o);
  CHECK(s.part_dir == dir.path() / "part_B_final");
  for (const auto& item : s.items) {
    const ImageSize size = ReadImageSize(item.image.string());
    CHECK(size.width == 1024);
    CHECK(size.height == 768);
    CHECK(!item.gray);
  }
  CHECK(DiscoverPart(dir.path(), "B", "all").samples.size() == 2);
}

TEST_CASE("SyntheticHeads: exact count, deterministic, inside, shared pixels, a right-edge point, denser at the top") {
  CHECK(SyntheticHeads(100, 80, 0, 1).empty());
  int top = 0, bottom = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    const int w = 300 + 17 * static_cast<int>(seed), h = 200 + 11 * static_cast<int>(seed);
    const auto pts = SyntheticHeads(w, h, 500, seed);
    REQUIRE(pts.size() == 500);
    CHECK(pts == SyntheticHeads(w, h, 500, seed));
    CHECK(pts != SyntheticHeads(w, h, 500, seed + 100));
    std::set<std::pair<int, int>> pixels;
    bool edge = false;
    for (const auto& p : pts) {
      CHECK(p[0] > 0);
      CHECK(p[0] < w);
      CHECK(p[1] > 0);
      CHECK(p[1] < h);
      pixels.insert({static_cast<int>(p[0]), static_cast<int>(p[1])});
      edge = edge || p[0] > w - 0.31;
      (p[1] < h / 2.0 ? top : bottom) += 1;
    }
    CHECK(pixels.size() < pts.size());  // some heads share a pixel after truncation
    CHECK(edge);
  }
  CHECK(top > bottom);
  CHECK(SyntheticHeads(50, 40, 3, 9).size() == 3);
}

TEST_CASE("RenderCrowd gives a deterministic BGR image of the requested size") {
  const auto pts = SyntheticHeads(120, 90, 30, 5);
  const cv::Mat a = RenderCrowd(120, 90, pts, 3);
  const cv::Mat b = RenderCrowd(120, 90, pts, 3);
  CHECK(a.type() == CV_8UC3);
  CHECK(a.cols == 120);
  CHECK(a.rows == 90);
  CHECK(cv::norm(a, b, cv::NORM_INF) == 0);
  CHECK(cv::norm(a, RenderCrowd(120, 90, pts, 4), cv::NORM_INF) > 0);
}

TEST_CASE("bad options are usage errors") {
  test::TempDir dir;
  SyntheticOptions o = Small(dir.path());
  o.part = "C";
  CHECK_THROWS_AS(GenerateSynthetic(o), UsageError);
  o = Small(dir.path());
  o.min_size = 300;
  o.max_size = 200;
  CHECK_THROWS_AS(GenerateSynthetic(o), UsageError);
  o = Small(dir.path());
  o.max_heads = 70000;
  CHECK_THROWS_AS(GenerateSynthetic(o), UsageError);
  o = Small(dir.path());
  o.out = "";
  CHECK_THROWS_AS(GenerateSynthetic(o), UsageError);
  o = Small(dir.path());
  o.train_images = o.test_images = std::numeric_limits<int>::max();  // the sum used to wrap negative
  CHECK_THROWS_AS(GenerateSynthetic(o), UsageError);
}

TEST_CASE("make_synthetic: --help exits 0, bad options exit 2, an existing dataset needs --overwrite") {
  test::TempDir dir;
  CHECK(RunMake({"--help"}) == 0);
  CHECK(RunMake({"--no-such-option"}) == 2);
  CHECK(RunMake({"--part", "C", "--out", dir.path().string()}) == 2);
  CHECK(RunMake({"--images", "many"}) == 2);
  CHECK(RunMake({}) == 2);  // --out is required

  const std::vector<std::string> args = {
      "--out", dir.path().string(), "--images", "2", "--test-images", "1", "--max-size", "96", "--min-size",
      "64",    "--max-heads",       "30"};
  CHECK(RunMake(args) == 0);
  CHECK(DiscoverPart(dir.path(), "A", "all").samples.size() == 3);
  CHECK(RunMake(args) == 1);  // not empty
  std::vector<std::string> again = args;
  again[3] = "1";
  again.push_back("--overwrite");
  CHECK(RunMake(again) == 0);
  CHECK(DiscoverPart(dir.path(), "A", "all").samples.size() == 2);  // the old IMG_2 is gone

  // A part folder not made by the generator (e.g. the real dataset) is never overwritten.
  fs::create_directories(dir / "real/part_A_final/train_data/images");
  std::ofstream(dir / "real/part_A_final/train_data/images/IMG_1.jpg") << "x";
  CHECK(RunMake({"--out", (dir / "real").string(), "--overwrite"}) == 1);
  CHECK(fs::exists(dir / "real/part_A_final/train_data/images/IMG_1.jpg"));
}

TEST_CASE("the built make_synthetic binary runs and prints one summary line") {
  const std::string tool = test::Tool("make_synthetic");
  if (!fs::exists(tool)) {
    MESSAGE("make_synthetic not built: skipped");
    return;
  }
  test::TempDir dir;
  const fs::path log = dir / "log.txt";
  CHECK(test::Run(tool + " --out " + (dir / "ds").string() + " --images 1 --test-images 1 --max-heads 25", log) == 0);
  const std::string text = ReadBytes(log);
  CHECK(text.find("make_synthetic: wrote 2 images") == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(test::Run(tool + " --bogus", dir / "log2.txt") == 2);
}

}  // namespace csr

namespace csr {
namespace {

TEST_CASE("make_synthetic --like writes every dataset layout; discovery and the readers give back its heads") {
  for (DatasetKind kind :
       {DatasetKind::kQnrf, DatasetKind::kUcf50, DatasetKind::kJhu, DatasetKind::kNwpu, DatasetKind::kPoints}) {
    CAPTURE(Name(kind));
    test::TempDir dir;
    SyntheticOptions o = Small(dir / "data");
    o.train_images = 3;
    o.like = kind;
    const SyntheticSummary s = GenerateSynthetic(o);
    DatasetQuery q;
    q.kind = kind;
    q.root = dir / "data";
    if (kind == DatasetKind::kUcf50) q.split = "all";  // no folds: every image
    CHECK(DetectDataset(q.root) == kind);
    const Discovery d = DiscoverDataset(q);
    CHECK(d.samples.size() == s.items.size());
    CHECK(d.unannotated_images.empty());
    CHECK(d.orphan_annotations.empty());
    CHECK(d.stray_files == 0);
    std::map<std::string, const SyntheticImage*> by_image;
    for (const SyntheticImage& item : s.items) by_image[item.image.string()] = &item;
    int unlabelled = 0, empty = 0;
    for (const Sample& sample : d.samples) {
      CAPTURE(sample.image);
      REQUIRE(by_image.count(sample.image.string()) == 1);
      const SyntheticImage& item = *by_image[sample.image.string()];
      if (kind != DatasetKind::kUcf50) CHECK(sample.split == item.split);
      if (sample.format == AnnotationFormat::kNone) {
        ++unlabelled;
        continue;
      }
      const std::vector<Point> heads = ReadHeads(sample);
      CHECK(heads == item.points);
      empty += heads.empty() ? 1 : 0;
    }
    // NWPU-Crowd withholds its test labels; JHU-Crowd++ and NWPU-Crowd have an image without heads.
    CHECK(unlabelled == (kind == DatasetKind::kNwpu ? o.test_images : 0));
    CHECK(empty == (kind == DatasetKind::kJhu || kind == DatasetKind::kNwpu ? 1 : 0));
    if (kind == DatasetKind::kJhu) {
      const auto labels = ReadJhuLabels((dir / "data" / "train" / "image_labels.txt").string());
      CHECK(labels.size() == 3);
      CHECK(labels.at("0002").count == 0);
    }
    // Written once more with the same seed: byte-identical; without --overwrite: refused.
    const auto before = Snapshot(dir / "data");
    test::ExpectError([&] { GenerateSynthetic(o); }, "--overwrite");
    o.overwrite = true;
    GenerateSynthetic(o);
    CHECK(Snapshot(dir / "data") == before);
  }
}

}  // namespace
}  // namespace csr

namespace csr {
namespace {

TEST_CASE("--real-stats draws NWPU-Crowd's sizes and counts: the densest image, empty ones, sizes near the mean") {
  test::TempDir dir;
  SyntheticOptions o;
  o.out = dir.path().string();
  o.like = DatasetKind::kNwpu;
  o.real_stats = true;
  o.train_images = 12;
  o.test_images = 2;
  o.jpeg_quality = 50;
  const SyntheticSummary s = GenerateSynthetic(o);
  const DatasetStats st = PublishedStats(DatasetKind::kNwpu, "A");
  REQUIRE(s.items.size() == 16);
  double w = 0, h = 0;
  int empty = 0;
  size_t most = 0;
  for (const SyntheticImage& it : s.items) {
    w += it.width;
    h += it.height;
    empty += it.points.empty();
    most = std::max(most, it.points.size());
  }
  CHECK(s.items.front().points.size() == static_cast<size_t>(st.max_count));  // train image 1: 20,033 heads
  CHECK(most == 20033);
  CHECK(empty >= 1);  // train image 2 at least
  CHECK(w / 16 == doctest::Approx(st.width).epsilon(0.15));
  CHECK(h / 16 == doctest::Approx(st.height).epsilon(0.15));
  // The files agree with what was drawn.
  const cv::Mat first = cv::imread(s.items.front().image.string());
  CHECK(first.cols == s.items.front().width);
  CHECK(first.rows == s.items.front().height);
  // The same seed gives the same files, whatever the thread count.
  test::TempDir again;
  o.out = again.path().string();
  {
    const tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    GenerateSynthetic(o);
  }
  CHECK(Snapshot(dir.path()) == Snapshot(again.path()));
}

}  // namespace
}  // namespace csr
