// The text and JSON annotation formats of JHU-Crowd++, NWPU-Crowd and custom
// point lists, and the split list files: each layout read, and every
// malformed entry one error naming the file and the line.
#include "common/io/point_files.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "common/base/error.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;
using test::ExpectError;

std::string Write(const test::TempDir& dir, const std::string& name, const std::string& text) {
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

TEST_CASE("JHU-Crowd++ gt: six numbers a head, CRLF and blank lines tolerated, zero heads valid") {
  test::TempDir dir;
  const std::string p = Write(dir, "0001.txt", "120 45 12 14 1 0\r\n\r\n300.5 60 30 32 3 1\n");
  const std::vector<JhuHead> heads = ReadJhuHeads(p);
  REQUIRE(heads.size() == 2);
  CHECK(heads[0].x == 120);
  CHECK(heads[0].y == 45);
  CHECK(heads[0].w == 12);
  CHECK(heads[0].h == 14);
  CHECK(heads[1].x == 300.5);
  CHECK(heads[1].occlusion == 3);
  CHECK(heads[1].blur == 1);
  CHECK(ReadJhuHeads(Write(dir, "empty.txt", "")).empty());
}

TEST_CASE("JHU-Crowd++ gt: a malformed line is an error naming the file and the line") {
  test::TempDir dir;
  ExpectError([&] { ReadJhuHeads(Write(dir, "a.txt", "1 2 3 4 1 0\n1 2 3 4 1\n")); },
              {"a.txt", "line 2", "expected 6 numbers", "got 5"});
  ExpectError([&] { ReadJhuHeads(Write(dir, "b.txt", "1 2 x 4 1 0\n")); }, {"b.txt", "line 1", "'x'"});
  ExpectError([&] { ReadJhuHeads(Write(dir, "c.txt", "1 2 3 4 4 0\n")); }, {"c.txt", "occlusion '4'"});
  ExpectError([&] { ReadJhuHeads(Write(dir, "d.txt", "1 2 3 4 1 2\n")); }, {"d.txt", "blur '2'"});
  ExpectError([&] { ReadJhuHeads(Write(dir, "e.txt", "nan 2 3 4 1 0\n")); }, {"e.txt", "not a finite number"});
  ExpectError([&] { ReadJhuHeads((dir / "missing.txt").string()); }, {"missing.txt", "not found"});
}

TEST_CASE("JHU-Crowd++ image_labels: id,count,scene,weather,distractor keyed by id without extension") {
  test::TempDir dir;
  const std::string p = Write(dir, "image_labels.txt", "0001,171,marathon,0,0\n0002.jpg, 0, water, 2, 1\n");
  const std::map<std::string, JhuLabel> labels = ReadJhuLabels(p);
  REQUIRE(labels.size() == 2);
  CHECK(labels.at("0001").count == 171);
  CHECK(labels.at("0001").scene == "marathon");
  CHECK(labels.at("0002").weather == 2);
  CHECK(labels.at("0002").distractor == 1);
  ExpectError([&] { ReadJhuLabels(Write(dir, "l1.txt", "0001,171,marathon,0\n")); },
              {"l1.txt", "line 1", "expected 5 comma-separated fields"});
  ExpectError([&] { ReadJhuLabels(Write(dir, "l2.txt", "0001,171,marathon,4,0\n")); }, {"l2.txt", "weather '4'"});
  ExpectError([&] { ReadJhuLabels(Write(dir, "l3.txt", "0001,-1,x,0,0\n")); }, {"l3.txt", "count '-1'"});
  ExpectError([&] { ReadJhuLabels(Write(dir, "l4.txt", "0001,1,x,0,0\n0001.jpg,2,x,0,0\n")); },
              {"l4.txt", "line 2", "listed twice"});
}

TEST_CASE("NWPU-Crowd json: points read, human_num must match, malformed JSON named") {
  test::TempDir dir;
  const std::string p = Write(
      dir, "0001.json", R"({"img_id": "0001.jpg", "human_num": 2, "points": [[10.5, 20], [30, 40.25]], "boxes": []})");
  CHECK(ReadNwpuJson(p) == std::vector<Point>{{10.5, 20}, {30, 40.25}});
  CHECK(ReadNwpuJson(Write(dir, "zero.json", R"({"img_id": "0002.jpg", "human_num": 0, "points": []})")).empty());
  ExpectError([&] { ReadNwpuJson(Write(dir, "n.json", R"({"human_num": 3, "points": [[1, 2]]})")); },
              {"n.json", "human_num is 3", "holds 1"});
  ExpectError([&] { ReadNwpuJson(Write(dir, "bad.json", R"({"points": [[1, 2]],)")); }, {"bad.json", "invalid JSON"});
  ExpectError([&] { ReadNwpuJson(Write(dir, "nop.json", R"({"img_id": "1"})")); }, {"nop.json", "no 'points'"});
  ExpectError([&] { ReadNwpuJson(Write(dir, "tri.json", R"({"points": [[1, 2, 3]]})")); },
              {"tri.json", "points[0]", "[x, y]"});
  ExpectError([&] { ReadNwpuJson(Write(dir, "str.json", R"({"points": [["1", 2]]})")); }, {"str.json", "points[0]"});
}

TEST_CASE("custom point files: .json, .csv with a header, .txt as P2PNet writes it") {
  test::TempDir dir;
  const std::vector<Point> want = {{1, 2}, {3.5, 4}};
  CHECK(ReadPointFile(Write(dir, "a.json", R"({"points": [[1, 2], [3.5, 4]]})")) == want);
  CHECK(ReadPointFile(Write(dir, "b.json", R"([[1, 2], [3.5, 4]])")) == want);
  CHECK(ReadPointFile(Write(dir, "c.csv", "x,y\n1,2\n3.5,4\n")) == want);
  CHECK(ReadPointFile(Write(dir, "d.txt", "1 2\n# a comment\n\n3.5 4\n")) == want);
  CHECK(ReadPointFile(Write(dir, "e.txt", "1, 2\n3.5,4")) == want);
  CHECK(ReadPointFile(Write(dir, "none.txt", "")).empty());
  ExpectError([&] { ReadPointFile(Write(dir, "f.txt", "1 2\n3\n")); }, {"f.txt", "line 2", "expected 'x y'"});
  ExpectError([&] { ReadPointFile(Write(dir, "g.csv", "1,2\nx,y\n")); }, {"g.csv", "line 2"});
  ExpectError([&] { ReadPointFile(Write(dir, "h.csv", "1,,2\n")); }, {"h.csv", "line 1"});
  ExpectError([&] { ReadPointFile(Write(dir, "i.xml", "<points/>")); }, {"i.xml", "unknown annotation type"});
  ExpectError([&] { ReadPointFile(Write(dir, "j.json", R"({"heads": []})")); }, {"j.json", "'points'"});
  ExpectError([&] { ReadPointFile(Write(dir, "k.txt", "1 inf\n")); }, {"k.txt", "line 1"});
}

TEST_CASE("split lists: the first token is the id, the rest are fields; a duplicate is named") {
  test::TempDir dir;
  const std::vector<ListEntry> e = ReadListFile(Write(dir, "train.txt", "0001 1 2\n\n0002 0 4\r\n"));
  REQUIRE(e.size() == 2);
  CHECK(e[0].id == "0001");
  CHECK(e[0].fields == std::vector<std::string>{"1", "2"});
  CHECK(e[1].line == 3);
  CHECK(ReadListFile(Write(dir, "q.txt", "img_0001.jpg\nimg_0002.jpg\n")).size() == 2);
  ExpectError([&] { ReadListFile(Write(dir, "dup.txt", "0001 1 2\n0001 1 2\n")); }, {"dup.txt", "line 2", "twice"});
}

}  // namespace
}  // namespace csr
