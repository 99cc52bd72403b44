// Discovery of every supported layout (UCF-QNRF, UCF_CC_50, JHU-Crowd++,
// NWPU-Crowd, custom point lists) and ReadHeads on each annotation format.
// Discovery reads names only, so most images here are empty files.
#include "common/io/datasets.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "common/base/error.h"
#include "common/io/mat_io.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;
using test::ExpectError;

void Touch(const fs::path& p, const std::string& text = "") {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::vector<std::string> Stems(const Discovery& d, const std::string& split) {
  std::vector<std::string> out;
  for (const Sample& s : d.samples) {
    if (s.split == split) out.push_back(s.stem);
  }
  return out;
}

DatasetQuery Query(DatasetKind kind, const fs::path& root, const std::string& split = "all") {
  DatasetQuery q;
  q.kind = kind;
  q.root = root;
  q.split = split;
  return q;
}

TEST_CASE("dataset names parse, and a root's layout is detected or one error lists the layouts looked for") {
  for (DatasetKind k : AllDatasetKinds()) CHECK(ParseDatasetKind(Name(k)) == k);
  ExpectError([] { ParseDatasetKind("ucf"); }, {"--dataset", "qnrf", "nwpu", "'ucf'"});
  test::TempDir dir;
  fs::create_directories(dir / "q" / "Train");
  fs::create_directories(dir / "q" / "Test");
  CHECK(DetectDataset(dir / "q") == DatasetKind::kQnrf);
  fs::create_directories(dir / "j" / "train" / "gt");
  CHECK(DetectDataset(dir / "j") == DatasetKind::kJhu);
  fs::create_directories(dir / "n" / "images");
  fs::create_directories(dir / "n" / "jsons");
  CHECK(DetectDataset(dir / "n") == DatasetKind::kNwpu);
  fs::create_directories(dir / "p" / "images");
  fs::create_directories(dir / "p" / "points");
  CHECK(DetectDataset(dir / "p") == DatasetKind::kPoints);
  Touch(dir / "u" / "1_ann.mat");
  CHECK(DetectDataset(dir / "u") == DatasetKind::kUcf50);
  fs::create_directories(dir / "s" / "part_A_final");
  CHECK(DetectDataset(dir / "s") == DatasetKind::kShanghaiTech);
  fs::create_directories(dir / "x" / "pictures");
  ExpectError([&] { DetectDataset(dir / "x"); }, {"no known dataset layout", "UCF-QNRF", "JHU-Crowd++", "NWPU-Crowd"});
}

TEST_CASE("UCF-QNRF: Train and Test pair img_N.jpg with img_N_ann.mat; --val-list takes images out of Train") {
  test::TempDir dir;
  const fs::path root = dir / "UCF-QNRF_ECCV18";
  for (int i : {1, 2, 3, 10}) {
    Touch(root / "Train" / StrCat("img_000", i, ".jpg"));
    WritePointsVariable((root / "Train" / StrCat("img_000", i, "_ann.mat")).string(), "annPoints", {{1, 2}});
  }
  Touch(root / "Train" / "img_0099_ann.mat");  // an annotation without its image
  Touch(root / "Train" / "img_0050.jpg");      // an image without annotation
  Touch(root / "Train" / "Thumbs.db");
  Touch(root / "Test" / "img_0001.jpg");
  WritePointsVariable((root / "Test" / "img_0001_ann.mat").string(), "annPoints", {});
  Discovery d = DiscoverDataset(Query(DatasetKind::kQnrf, root));
  CHECK(Stems(d, "train") == std::vector<std::string>{"img_0001", "img_0002", "img_0003", "img_00010"});
  CHECK(Stems(d, "test") == std::vector<std::string>{"img_0001"});
  REQUIRE(d.orphan_annotations.size() == 1);
  CHECK(d.orphan_annotations[0].filename() == "img_0099_ann.mat");
  REQUIRE(d.unannotated_images.size() == 1);
  CHECK(d.stray_files == 1);
  CHECK(d.samples[0].format == AnnotationFormat::kAnnPointsMat);
  CHECK(ReadHeads(d.samples[0]) == std::vector<Point>{{1, 2}});

  Touch(dir / "val.txt", "img_0002.jpg\r\nimg_0003.jpg\r\n");
  DatasetQuery q = Query(DatasetKind::kQnrf, root);
  q.val_list = (dir / "val.txt").string();
  d = DiscoverDataset(q);
  CHECK(Stems(d, "train") == std::vector<std::string>{"img_0001", "img_00010"});
  CHECK(Stems(d, "val") == std::vector<std::string>{"img_0002", "img_0003"});
  CHECK(d.stray_files == 1);
  Touch(dir / "bad_val.txt", "img_0002.jpg\nimg_0404.jpg\n");
  q.val_list = (dir / "bad_val.txt").string();
  ExpectError([&] { DiscoverDataset(q); }, {"Train", "names 'img_0404'"});
  q.val_list.clear();
  q.split = "val";
  ExpectError([&] { DiscoverDataset(q); }, {"--val-list", "no official val split"});
  q.split = "dev";
  ExpectError([&] { DiscoverDataset(q); }, {"--split", "qnrf has the splits train, val, test"});
}

TEST_CASE("UCF_CC_50: --fold K tests images 10(K-1)+1..10K and trains on the other forty") {
  test::TempDir dir;
  for (int i = 1; i <= 50; ++i) {
    Touch(dir / StrCat(i, ".jpg"));
    Touch(dir / StrCat(i, "_ann.mat"));
  }
  DatasetQuery q = Query(DatasetKind::kUcf50, dir.path());
  q.fold = 2;
  const Discovery d = DiscoverDataset(q);
  CHECK(Stems(d, "test") == std::vector<std::string>{"11", "12", "13", "14", "15", "16", "17", "18", "19", "20"});
  CHECK(Stems(d, "train").size() == 40);
  CHECK(d.stray_files == 0);
  q.fold = 0;
  q.split = "train";
  ExpectError([&] { DiscoverDataset(q); }, {"--fold", "1..5"});
  q.split = "all";
  CHECK(DiscoverDataset(q).samples.size() == 50);
}

TEST_CASE("JHU-Crowd++: every split's images pair with gt/*.txt, empty files are images without heads") {
  test::TempDir dir;
  for (const char* s : {"train", "val", "test"}) {
    Touch(dir / s / "images" / "0001.jpg");
    Touch(dir / s / "gt" / "0001.txt", "10 20 4 4 1 0\n11 21 4 4 2 1\n");
    Touch(dir / s / "images" / "0002.jpg");
    Touch(dir / s / "gt" / "0002.txt");
    Touch(dir / s / "image_labels.txt", "0001,2,street,0,0\n0002,0,street,0,0\n");
  }
  const Discovery d = DiscoverDataset(Query(DatasetKind::kJhu, dir.path()));
  CHECK(d.samples.size() == 6);
  CHECK(Stems(d, "val") == std::vector<std::string>{"0001", "0002"});
  CHECK(d.stray_files == 0);
  CHECK(ReadHeads(d.samples[0]) == std::vector<Point>{{10, 20}, {11, 21}});
  CHECK(ReadHeads(d.samples[1]).empty());
  CHECK(DiscoverDataset(Query(DatasetKind::kJhu, dir.path(), "test")).samples.size() == 2);
  fs::remove_all(dir / "val" / "gt");
  ExpectError([&] { DiscoverDataset(Query(DatasetKind::kJhu, dir.path(), "val")); },
              {"gt", "annotations folder not found"});
}

TEST_CASE("NWPU-Crowd: the lists pick each split from images/, test images have no labels") {
  test::TempDir dir;
  for (int i = 1; i <= 5; ++i) {
    const std::string id = StrCat("000", i);
    Touch(dir / "images" / (id + ".jpg"));
    if (i <= 4)
      Touch(dir / "jsons" / (id + ".json"), R"({"img_id": ")" + id + R"(.jpg", "human_num": 1, "points": [[3, 4]]})");
  }
  Touch(dir / "train.txt", "0001 1 2\n0002 0 4\n");
  Touch(dir / "val.txt", "0003 2 1\n0004 3 0\n");
  Touch(dir / "test.txt", "0005\n");
  const Discovery d = DiscoverDataset(Query(DatasetKind::kNwpu, dir.path()));
  CHECK(Stems(d, "train") == std::vector<std::string>{"0001", "0002"});
  CHECK(Stems(d, "val") == std::vector<std::string>{"0003", "0004"});
  CHECK(Stems(d, "test") == std::vector<std::string>{"0005"});
  CHECK(d.orphan_annotations.empty());
  CHECK(d.unannotated_images.empty());
  const Sample& test = d.samples.back();
  CHECK(test.format == AnnotationFormat::kNone);
  ExpectError([&] { ReadHeads(test); }, {"0005.jpg", "no labels"});
  CHECK(ReadHeads(d.samples[0]) == std::vector<Point>{{3, 4}});
  fs::remove(dir / "val.txt");
  ExpectError([&] { DiscoverDataset(Query(DatasetKind::kNwpu, dir.path(), "val")); }, {"val.txt", "not found"});
}

TEST_CASE("custom points: images/ with points/ in any of .json, .csv, .txt; lists optional") {
  test::TempDir dir;
  Touch(dir / "images" / "street_1.jpg");
  Touch(dir / "points" / "street_1.txt", "1 2\n3 4\n");
  Touch(dir / "images" / "street_2.png");
  Touch(dir / "points" / "street_2.json", R"({"points": [[5, 6]]})");
  Touch(dir / "images" / "street_3.jpg");
  Touch(dir / "points" / "street_3.csv", "x,y\n7,8\n");
  Discovery d = DiscoverDataset(Query(DatasetKind::kPoints, dir.path()));
  CHECK(Stems(d, "train") == std::vector<std::string>{"street_1", "street_2", "street_3"});
  CHECK(ReadHeads(d.samples[1]) == std::vector<Point>{{5, 6}});
  CHECK(ReadHeads(d.samples[2]) == std::vector<Point>{{7, 8}});
  ExpectError([&] { DiscoverDataset(Query(DatasetKind::kPoints, dir.path(), "test")); }, {"no test.txt"});
  // P2PNet's lists: "image annotation" per line, paths relative to the root.
  Touch(dir / "train.txt", "images/street_1.jpg points/street_1.txt\nimages/street_2.png points/street_2.json\n");
  Touch(dir / "test.txt", "street_3\n");
  d = DiscoverDataset(Query(DatasetKind::kPoints, dir.path()));
  CHECK(Stems(d, "train") == std::vector<std::string>{"street_1", "street_2"});
  CHECK(Stems(d, "test") == std::vector<std::string>{"street_3"});
}

}  // namespace
}  // namespace csr
