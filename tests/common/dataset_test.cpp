#include "common/io/dataset.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

// Empty placeholder files are enough: discovery never opens them.
void Touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p).flush();
}

// A ShanghaiTech part with the given image numbers per split. `mirrored`
// uses the part_A/ground-truth spelling of the widely mirrored copy.
struct Layout {
  fs::path part_dir;
  fs::path Images(const std::string& split) const { return part_dir / (split + "_data") / "images"; }
  fs::path Gt(const std::string& split) const {
    const fs::path s = part_dir / (split + "_data");
    return fs::is_directory(s / "ground-truth") ? s / "ground-truth" : s / "ground_truth";
  }
};

Layout MakePart(const fs::path& root, const std::string& part, bool mirrored, const std::vector<int>& train,
                const std::vector<int>& test) {
  Layout l{root / (mirrored ? "part_" + part : "part_" + part + "_final")};
  const std::string gt = mirrored ? "ground-truth" : "ground_truth";
  for (const auto& [split, numbers] : {std::pair{std::string("train"), train}, std::pair{std::string("test"), test}}) {
    const fs::path s = l.part_dir / (split + "_data");
    fs::create_directories(s / "images");
    fs::create_directories(s / gt);
    for (int n : numbers) {
      Touch(s / "images" / ("IMG_" + std::to_string(n) + ".jpg"));
      Touch(s / gt / ("GT_IMG_" + std::to_string(n) + ".mat"));
    }
  }
  return l;
}

std::vector<std::string> Stems(const Discovery& d, const std::string& split = "") {
  std::vector<std::string> out;
  for (const Sample& s : d.samples) {
    if (split.empty() || s.split == split) out.push_back(s.stem);
  }
  return out;
}

using test::ExpectError;

TEST_CASE("dataset: the official layout pairs IMG_n.jpg with GT_IMG_n.mat and places the density beside it") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", false, {1, 2, 10}, {34});
  const Discovery d = DiscoverPart(root.path(), "A", "all");
  CHECK(d.part_dir == root / "part_A_final");
  REQUIRE(d.samples.size() == 4);
  const Sample& s = d.samples[2];
  CHECK(s.split == "train");
  CHECK(s.stem == "IMG_10");
  CHECK(s.image == l.Images("train") / "IMG_10.jpg");
  CHECK(s.annotation == l.Gt("train") / "GT_IMG_10.mat");
  CHECK(s.density == l.Gt("train") / "IMG_10.h5");
  CHECK(d.samples[3].split == "test");
  CHECK(d.samples[3].annotation == l.Gt("test") / "GT_IMG_34.mat");
  CHECK(d.unannotated_images.empty());
  CHECK(d.orphan_annotations.empty());
  CHECK(d.stray_files == 0);
}

TEST_CASE("dataset: samples come train first, then test, each in natural order (IMG_2 before IMG_10)") {
  test::TempDir root;
  MakePart(root.path(), "B", false, {10, 2, 100, 1, 21}, {300, 3, 30});
  const Discovery d = DiscoverPart(root.path(), "B", "all");
  CHECK(Stems(d) ==
        std::vector<std::string>{"IMG_1", "IMG_2", "IMG_10", "IMG_21", "IMG_100", "IMG_3", "IMG_30", "IMG_300"});
}

TEST_CASE("dataset: NaturalLess compares digit runs by value") {
  CHECK(NaturalLess("IMG_2", "IMG_10"));
  CHECK_FALSE(NaturalLess("IMG_10", "IMG_2"));
  CHECK(NaturalLess("IMG_9", "IMG_09a"));
  CHECK_FALSE(NaturalLess("IMG_7", "IMG_7"));
  CHECK(NaturalLess("IMG_1", "IMG_1a"));
  CHECK(NaturalLess("GT_IMG_5", "IMG_1"));
  CHECK(NaturalLess("a99", "b1"));
  std::vector<std::string> v = {"IMG_100", "IMG_20", "IMG_3", "IMG_1000", "IMG_21"};
  std::sort(v.begin(), v.end(), NaturalLess);
  CHECK(v == std::vector<std::string>{"IMG_3", "IMG_20", "IMG_21", "IMG_100", "IMG_1000"});
}

TEST_CASE("dataset: the mirrored layout (part_A, ground-truth) is found, its Thumbs.db and 000.png are stray") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", true, {1, 2}, {5});
  Touch(l.Images("train") / "Thumbs.db");
  Touch(l.Images("train") / "000.png");
  Touch(l.Images("test") / ".DS_Store");
  Touch(l.Gt("train") / "Thumbs.db");
  const Discovery d = DiscoverPart(root.path(), "A", "all");
  CHECK(d.part_dir == root / "part_A");
  CHECK(Stems(d) == std::vector<std::string>{"IMG_1", "IMG_2", "IMG_5"});
  CHECK(d.samples[0].annotation == l.part_dir / "train_data" / "ground-truth" / "GT_IMG_1.mat");
  CHECK(d.samples[0].density == l.part_dir / "train_data" / "ground-truth" / "IMG_1.h5");
  CHECK(d.stray_files == 4);
  CHECK(d.unannotated_images.empty());
  CHECK(d.orphan_annotations.empty());
}

TEST_CASE("dataset: the official layout is preferred when both spellings exist") {
  test::TempDir root;
  MakePart(root.path(), "A", true, {7}, {8});
  MakePart(root.path(), "A", false, {1}, {2});
  const Discovery d = DiscoverPart(root.path(), "A", "all");
  CHECK(d.part_dir == root / "part_A_final");
  CHECK(Stems(d) == std::vector<std::string>{"IMG_1", "IMG_2"});
}

TEST_CASE("dataset: density maps and temporaries already in ground_truth are neither samples nor stray") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", false, {1}, {1});
  Touch(l.Gt("train") / "IMG_1.h5");
  Touch(l.Gt("train") / "IMG_1.h5.tmp-123-0");
  const Discovery d = DiscoverPart(root.path(), "A", "all");
  CHECK(d.samples.size() == 2);
  CHECK(d.stray_files == 0);
  CHECK(d.orphan_annotations.empty());
}

TEST_CASE("dataset: images without annotation and annotations without image are listed, in natural order") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", false, {1, 2}, {3});
  for (int n : {40, 5, 300, 12}) Touch(l.Images("train") / ("IMG_" + std::to_string(n) + ".jpg"));
  for (int n : {90, 9, 100}) Touch(l.Gt("train") / ("GT_IMG_" + std::to_string(n) + ".mat"));
  Touch(l.Gt("test") / "GT_IMG_77.mat");
  const Discovery d = DiscoverPart(root.path(), "A", "all");
  CHECK(Stems(d) == std::vector<std::string>{"IMG_1", "IMG_2", "IMG_3"});
  CHECK(d.unannotated_images == std::vector<fs::path>{l.Images("train") / "IMG_5.jpg", l.Images("train") / "IMG_12.jpg",
                                                      l.Images("train") / "IMG_40.jpg",
                                                      l.Images("train") / "IMG_300.jpg"});
  CHECK(d.orphan_annotations == std::vector<fs::path>{l.Gt("train") / "GT_IMG_9.mat", l.Gt("train") / "GT_IMG_90.mat",
                                                      l.Gt("train") / "GT_IMG_100.mat",
                                                      l.Gt("test") / "GT_IMG_77.mat"});
  CHECK(d.stray_files == 0);
}

TEST_CASE("dataset: split train or test scans only that split, all scans both") {
  test::TempDir root;
  MakePart(root.path(), "A", false, {1, 2, 3}, {4, 5});
  const Discovery train = DiscoverPart(root.path(), "A", "train");
  CHECK(Stems(train) == std::vector<std::string>{"IMG_1", "IMG_2", "IMG_3"});
  CHECK(Stems(train, "test").empty());
  const Discovery test = DiscoverPart(root.path(), "A", "test");
  CHECK(Stems(test) == std::vector<std::string>{"IMG_4", "IMG_5"});
  CHECK(Stems(test, "train").empty());
  const Discovery all = DiscoverPart(root.path(), "A", "all");
  CHECK(Stems(all, "train").size() == 3);
  CHECK(Stems(all, "test").size() == 2);
}

TEST_CASE("dataset: a named split whose folder is missing throws an Error naming it") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", false, {1}, {2});
  fs::remove_all(l.part_dir / "test_data");
  ExpectError([&] { DiscoverPart(root.path(), "A", "test"); }, {"test_data"});
  CHECK(Stems(DiscoverPart(root.path(), "A", "all")) == std::vector<std::string>{"IMG_1"});
}

TEST_CASE("dataset: a split or part without any image is an Error naming the images folder, not an empty set") {
  test::TempDir root;
  const Layout l = MakePart(root.path(), "A", false, {1}, {2});
  for (const auto& e : fs::directory_iterator(l.part_dir / "train_data" / "images")) fs::remove(e.path());
  ExpectError([&] { DiscoverPart(root.path(), "A", "train"); },
              {(l.part_dir / "train_data" / "images").string(), "no images", "1 annotation(s) without image"});
  CHECK(DiscoverPart(root.path(), "A", "all").samples.size() == 1);  // test_data still has one
  for (const auto& e : fs::directory_iterator(l.part_dir / "test_data" / "images")) fs::remove(e.path());
  ExpectError([&] { DiscoverPart(root.path(), "A", "all"); }, {l.part_dir.string(), "no images"});
}

TEST_CASE("dataset: a missing part or root throws an Error naming the root") {
  test::TempDir root;
  MakePart(root.path(), "A", false, {1}, {2});
  ExpectError([&] { DiscoverPart(root.path(), "B", "all"); }, {root.path().string(), "part_B"});
  const fs::path missing = root / "nowhere";
  ExpectError([&] { DiscoverPart(missing, "A", "all"); }, {missing.string()});
}

TEST_CASE("dataset: a bad --part or --split is a UsageError naming the option, before touching the disk") {
  test::TempDir root;
  MakePart(root.path(), "A", false, {1}, {2});
  for (const fs::path& r : {root.path(), root / "nowhere"}) {
    INFO("root " << r);
    CHECK_THROWS_WITH_AS(DiscoverPart(r, "C", "all"), doctest::Contains("--part"), UsageError);
    CHECK_THROWS_WITH_AS(DiscoverPart(r, "a", "all"), doctest::Contains("--part"), UsageError);
    CHECK_THROWS_WITH_AS(DiscoverPart(r, "A", "val"), doctest::Contains("--split"), UsageError);
    CHECK_THROWS_WITH_AS(DiscoverPart(r, "A", ""), doctest::Contains("--split"), UsageError);
  }
}

TEST_CASE("dataset: the shared ShanghaiTech samples are discovered (7 in Part A, 5 in Part B)" *
          doctest::test_suite("optional")) {
  const fs::path data = test::SharedData();
  CSR_SKIP_UNLESS(!data.empty() && fs::is_directory(data / "ShanghaiTech"), csr::test::kNeedShared,
                  "shared ShanghaiTech samples not present");
  const Discovery a = DiscoverPart(data / "ShanghaiTech", "A", "all");
  CHECK(Stems(a, "train") == std::vector<std::string>{"IMG_1", "IMG_40", "IMG_135", "IMG_157", "IMG_268"});
  CHECK(Stems(a, "test") == std::vector<std::string>{"IMG_1", "IMG_34"});
  CHECK(a.unannotated_images.empty());
  CHECK(a.orphan_annotations.empty());
  for (const Sample& s : a.samples) {
    CHECK(fs::is_regular_file(s.image));
    CHECK(fs::is_regular_file(s.annotation));
    CHECK(s.annotation.filename() == "GT_" + s.stem + ".mat");
  }
  const Discovery b = DiscoverPart(data / "ShanghaiTech", "B", "all");
  CHECK(b.samples.size() == 5);
  CHECK(DiscoverPart(data / "ShanghaiTech", "A", "test").samples.size() == 2);
}

}  // namespace
}  // namespace csr
