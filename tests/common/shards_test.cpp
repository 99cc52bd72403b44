// The shard set reader/writer (common/shards/shards.h): round trips, random access,
// concurrency, and corruption detected with clear errors.
#include "common/shards/shards.h"

#include <hdf5.h>
#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <thread>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

// A record with a recognisable pattern depending on `seed`.
ShardRecord MakeRecord(int w, int h, int seed, bool smooth = false) {
  ShardRecord r;
  r.image.create(h, w, CV_8UC3);
  cv::RNG rng(static_cast<uint64_t>(seed) + 1);
  if (smooth) {
    r.image.setTo(cv::Scalar(seed % 255, 7, 200));
  } else {
    rng.fill(r.image, cv::RNG::UNIFORM, 0, 256);
  }
  r.target.create(h / 8, w / 8, CV_32F);
  rng.fill(r.target, cv::RNG::UNIFORM, 0.0, 1.0);
  r.source = StrCat("IMG_", seed, ".jpg");
  r.box = {seed, 2 * seed, w, h};
  r.count = seed * 3;
  r.density_sum = seed * 0.5 + 0.25;
  r.crop = seed % 9;
  return r;
}

bool SameMat(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) return false;
  return cv::norm(a, b, cv::NORM_INF) == 0.0;
}

// Writes `records` into one split "train" of a set at `dir` and its manifest.
std::vector<ShardFileInfo> WriteSet(const fs::path& dir, const std::vector<ShardRecord>& records, int per_shard,
                                    int deflate = 0) {
  ShardSetWriter set(dir, {"train"}, per_shard, deflate);
  for (const auto& r : records) set.split("train").Add(EncodeRecord(r, deflate));
  set.Finish();
  return set.shards("train");
}

std::vector<ShardRecord> SomeRecords(int n, bool smooth = false) {
  std::vector<ShardRecord> out;
  for (int i = 0; i < n; ++i) out.push_back(MakeRecord(16 + 8 * (i % 3), 24 + 8 * (i % 2), i, smooth));
  return out;
}

void FlipByte(const fs::path& p, uint64_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Offset of a byte sequence in a file (to hit a record's pixels precisely).
uint64_t FindBytes(const fs::path& p, const uint8_t* data, size_t n) {
  const std::string s = ReadTextFile(p);
  const size_t at = s.find(std::string(reinterpret_cast<const char*>(data), n));
  REQUIRE(at != std::string::npos);
  return at;
}

using test::ErrorOf;

TEST_CASE("crc32 matches zlib's standard check value") {
  CHECK(Crc32("123456789", 9) == 0xCBF43926u);
  CHECK(Crc32("6789", 4, Crc32("12345", 5)) == 0xCBF43926u);
}

TEST_CASE("records round-trip bit-exactly across several shards, in any order") {
  test::TempDir tmp;
  const auto records = SomeRecords(5);
  const auto shards = WriteSet(tmp.path(), records, 2);
  REQUIRE(shards.size() == 3);
  CHECK(shards[0].file == "train/shard-00000.h5");
  CHECK(shards[2].records == 1);
  ShardSet set(tmp.path());
  REQUIRE(set.size("train") == 5);
  for (int i : {4, 0, 3, 1, 2}) {
    const ShardRecord r = set.Read("train", i);
    CHECK(SameMat(r.image, records[i].image));
    CHECK(SameMat(r.target, records[i].target));
    CHECK(r.source == records[i].source);
    CHECK(r.box == records[i].box);
    CHECK(r.count == records[i].count);
    CHECK(r.density_sum == records[i].density_sum);
    CHECK(r.crop == records[i].crop);
  }
  set.Verify();
}

TEST_CASE("Info gives sizes and labels from the index") {
  test::TempDir tmp;
  const auto records = SomeRecords(4);
  WriteSet(tmp.path(), records, 3);
  ShardSet set(tmp.path());
  for (int i = 0; i < 4; ++i) {
    const RecordInfo info = set.Info("train", i);
    CHECK(info.width == records[i].image.cols);
    CHECK(info.height == records[i].image.rows);
    CHECK(info.source == records[i].source);
    CHECK(info.count == records[i].count);
    CHECK(info.density_sum == records[i].density_sum);
    CHECK(info.crop == records[i].crop);
  }
  CHECK(set.splits() == std::vector<std::string>{"train"});
}

TEST_CASE("deflate-compressed shards round-trip and are smaller for smooth images") {
  test::TempDir raw_dir, zip_dir;
  const auto records = SomeRecords(3, /*smooth=*/true);
  const auto raw = WriteSet(raw_dir.path(), records, 8, 0);
  const auto zip = WriteSet(zip_dir.path(), records, 8, 6);
  CHECK(zip[0].bytes < raw[0].bytes);
  ShardSet set(zip_dir.path());
  for (int i = 0; i < 3; ++i) {
    const ShardRecord r = set.Read("train", i);
    CHECK(SameMat(r.image, records[i].image));
    CHECK(SameMat(r.target, records[i].target));
  }
}

TEST_CASE("noise that does not compress is stored raw and still reads back") {
  test::TempDir tmp;
  const auto records = SomeRecords(2, /*smooth=*/false);
  WriteSet(tmp.path(), records, 8, 9);
  ShardSet set(tmp.path());
  CHECK(SameMat(set.Read("train", 1).image, records[1].image));
}

TEST_CASE("concurrent reads from several threads return the right records") {
  test::TempDir tmp;
  const auto records = SomeRecords(12);
  WriteSet(tmp.path(), records, 5, 1);
  ShardSet set(tmp.path());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 30; ++k) {
        const int i = (k * 7 + t * 5) % 12;
        const ShardRecord r = set.Read("train", i);
        if (!SameMat(r.image, records[i].image) || !SameMat(r.target, records[i].target)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(bad == 0);
}

TEST_CASE("more shards than the open-file cap are all readable") {
  test::TempDir tmp;
  const auto records = SomeRecords(40);
  WriteSet(tmp.path(), records, 1);
  ShardSet set(tmp.path());
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < 40; ++i) CHECK(SameMat(set.Read("train", i).target, records[i].target));
  }
}

TEST_CASE("ShardSetWriter writes the manifest last, with marker, version, totals and the producer's fields") {
  test::TempDir tmp;
  {
    ShardSetWriter set(tmp.path(), {"train", "test"}, 2, 0);
    for (const auto& r : SomeRecords(3)) set.split("train").Add(EncodeRecord(r, 0));
    set.split("test").Add(EncodeRecord(MakeRecord(16, 16, 9), 0));
    CHECK_FALSE(fs::exists(tmp / kManifestName));
    const nlohmann::json m =
        set.Finish({{"created_by", "test"}, {"totals", {{"images", 7}}}}, {{"train", {{"images", 5}}}});
    CHECK(set.shards("train").size() == 2);
    CHECK(m == nlohmann::json::parse(ReadTextFile(tmp / kManifestName)));
    CHECK(m["format"] == kShardSetFormat);
    CHECK(m["format_version"] == kShardFormatVersion);
    CHECK(m["created_by"] == "test");
    CHECK(m["totals"] ==
          nlohmann::json({{"images", 7}, {"records", 4}, {"shards", 3}, {"bytes", m["totals"]["bytes"]}}));
    CHECK(m["splits"]["train"]["images"] == 5);
    CHECK(m["splits"]["train"]["records"] == 3);
    CHECK(m["splits"]["test"]["records"] == 1);
  }
  const ShardSet set(tmp.path());
  CHECK(set.size("train") == 3);
  CHECK(IsShardFileName("shard-00000.h5"));
  CHECK(IsShardFileName("shard-123456.h5"));
  for (const char* bad : {"shard-0000.h5", "shard-0000a.h5", "shard-00000.h5.tmp-1-2", "xshard-00000.h5", ""}) {
    CHECK_FALSE(IsShardFileName(bad));
  }
}

TEST_CASE("a ShardSetWriter destroyed before Finish leaves no shard behind") {
  test::TempDir tmp;
  {
    ShardSetWriter set(tmp.path(), {"train"}, 1, 0);
    for (const auto& r : SomeRecords(3)) set.split("train").Add(EncodeRecord(r, 0));
  }
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp.path())) files += e.is_regular_file() ? 1 : 0;
  CHECK(files == 0);
}

TEST_CASE("a folder without a manifest is refused as incomplete") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 4);
  fs::remove(tmp / kManifestName);
  const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("incomplete shard set") != std::string::npos);
}

TEST_CASE("an unsupported format version is refused") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(1), 4);
  auto m = nlohmann::json::parse(ReadTextFile(tmp / kManifestName));
  m["format_version"] = 99;
  WriteTextFileAtomic(tmp / kManifestName, m.dump());
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("version 99") != std::string::npos);
}

TEST_CASE("a missing or truncated shard is named when the set is opened") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(4), 2);
  const fs::path shard = tmp / "train/shard-00001.h5";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("shard-00001.h5") != std::string::npos);
  CHECK(msg.find("truncated") != std::string::npos);
  fs::remove(shard);
  msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("shard-00001.h5") != std::string::npos);
  CHECK(msg.find("missing") != std::string::npos);
}

TEST_CASE("a corrupted byte in a record is caught by Verify and by Read") {
  test::TempDir tmp;
  const auto records = SomeRecords(3);
  WriteSet(tmp.path(), records, 8);
  const fs::path shard = tmp / "train/shard-00000.h5";
  const cv::Mat& img = records[1].image;
  FlipByte(shard, FindBytes(shard, img.data, img.total() * 3) + 100);
  ShardSet set(tmp.path());
  std::string msg = ErrorOf([&] { set.Verify(); });
  CHECK(msg.find("shard-00000.h5") != std::string::npos);
  CHECK(msg.find("checksum mismatch") != std::string::npos);
  msg = ErrorOf([&] { set.Read("train", 1); });
  CHECK(msg.find("record 1") != std::string::npos);
  CHECK(msg.find("checksum mismatch") != std::string::npos);
  CHECK(SameMat(set.Read("train", 0).image, records[0].image));  // the others still read
}

TEST_CASE("a shard whose header is destroyed gives one clear error") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 8);
  const fs::path shard = tmp / "train/shard-00000.h5";
  for (uint64_t i = 0; i < 64; ++i) FlipByte(shard, i);
  const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("shard-00000.h5") != std::string::npos);
  CHECK(msg.find("corrupt") != std::string::npos);
}

TEST_CASE("bad record indices and split names are errors, not crashes") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 8);
  ShardSet set(tmp.path());
  CHECK(ErrorOf([&] { set.Read("train", 2); }).find("out of range") != std::string::npos);
  CHECK(ErrorOf([&] { set.Info("train", -1); }).find("out of range") != std::string::npos);
  CHECK(ErrorOf([&] { set.size("validation"); }).find("no split 'validation'") != std::string::npos);
}

TEST_CASE("an unfinished writer leaves no temporary and no partial shard") {
  test::TempDir tmp;
  std::vector<ShardFileInfo> done;
  {
    ShardWriter w(tmp.path(), "train", 2, 0);
    for (const auto& r : SomeRecords(3)) w.Add(EncodeRecord(r, 0));
    // Destroyed without Finish(): the first shard (2 records) is complete, the second is not.
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp / "train")) names.push_back(e.path().filename().string());
  CHECK(names == std::vector<std::string>{"shard-00000.h5"});
}

// Edits one field of a written set's manifest, as a user (or a bad copy) might.
void EditManifest(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto m = nlohmann::json::parse(ReadTextFile(dir / kManifestName));
  edit(m);
  WriteTextFileAtomic(dir / kManifestName, m.dump());
}

TEST_CASE("a manifest whose totals disagree with its shards is refused, naming the field") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(5), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["splits"]["train"]["records"] = 6; });
  std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("manifest.json") != std::string::npos);
  CHECK(msg.find("'splits.train.records' says 6 but its shards hold 5") != std::string::npos);

  WriteSet(tmp.path(), SomeRecords(5), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["splits"]["train"]["bytes"] = 1; });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("'splits.train.bytes' says 1") != std::string::npos);

  WriteSet(tmp.path(), SomeRecords(5), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["totals"] = {{"records", 7}, {"shards", 3}}; });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("'totals.records' says 7") != std::string::npos);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["totals"] = {{"records", 5}, {"shards", 3}}; });
  ShardSet ok(tmp.path());  // consistent totals pass
  CHECK(ok.size("train") == 5);
}

TEST_CASE("a shard's record count in the manifest must match the shard itself") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(4), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) {
    m["splits"]["train"]["shards"][0]["records"] = 1;  // and keep the split total consistent
    m["splits"]["train"]["records"] = 3;
  });
  const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("shard-00000.h5") != std::string::npos);
  CHECK(msg.find("holds 2 records but manifest.json says 1") != std::string::npos);
}

TEST_CASE("absurd or escaping manifest entries are refused before any file is opened") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["splits"]["train"]["shards"][0]["records"] = -5; });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("records' is -5") != std::string::npos);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["splits"]["train"]["shards"][0]["records"] = 1ll << 40; });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("outside 0..") != std::string::npos);
  for (const char* bad : {"../train/shard-00000.h5", "/etc/passwd", ""}) {
    WriteSet(tmp.path(), SomeRecords(2), 2);
    EditManifest(tmp.path(), [&](nlohmann::json& m) { m["splits"]["train"]["shards"][0]["file"] = bad; });
    CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("is not a path inside the set") != std::string::npos);
  }
}

TEST_CASE("a shard listed under the wrong split, or another format marker, is refused") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) {
    m["splits"]["test"] = m["splits"]["train"];
    m["splits"].erase("train");
  });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("belongs to split 'train'") != std::string::npos);
  WriteSet(tmp.path(), SomeRecords(2), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["format"] = "something-else"; });
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("not a csrnet-cpp shard set") != std::string::npos);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["format"] = kShardSetFormat; });
  ShardSet ok(tmp.path());
  CHECK(ok.size("train") == 2);
}

// Brings the manifest's size and checksum of the first train shard up to
// date after an edit of the file, so that only the edit is wrong.
void RefreshFirstShard(const fs::path& dir) {
  const std::string bytes = ReadTextFile(dir / "train" / "shard-00000.h5");
  EditManifest(dir, [&](nlohmann::json& m) {
    auto& s = m["splits"]["train"];
    s["shards"][0]["bytes"] = bytes.size();
    s["shards"][0]["crc32"] = Crc32(bytes.data(), bytes.size());
    s["bytes"] = bytes.size();
  });
}

// Replaces a root attribute of a shard with a string of the given kind, and
// brings the manifest's size and checksum up to date, so that only the
// attribute is wrong.
void RewriteStringAttr(const fs::path& dir, const char* name, const std::string& value, bool variable) {
  const fs::path shard = dir / "train" / "shard-00000.h5";
  {
    h5::Lock lock;
    const hid_t f = H5Fopen(shard.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    H5Adelete(f, name);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, variable ? H5T_VARIABLE : value.size());
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* p = value.c_str();
    CHECK(H5Awrite(a, type, variable ? static_cast<const void*>(&p) : static_cast<const void*>(p)) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
  }
  RefreshFirstShard(dir);
}

TEST_CASE("string attributes must be fixed-length: variable-length ones (global heap) are refused unread") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 2);
  RewriteStringAttr(tmp.path(), "split", "train", false);
  CHECK(ShardSet(tmp.path()).size("train") == 2);  // the rewrite itself keeps the set valid
  RewriteStringAttr(tmp.path(), "split", "train", true);
  const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("shard-00000.h5") != std::string::npos);
  CHECK(msg.find("attribute 'split' is not a fixed-length string") != std::string::npos);
  RewriteStringAttr(tmp.path(), "split", "train", false);
  RewriteStringAttr(tmp.path(), "format", "csrnet-shard", false);
  CHECK(ErrorOf([&] { ShardSet set(tmp.path()); }).find("attribute 'format' is \"csrnet-shard\"") != std::string::npos);
}

TEST_CASE("a version 1 shard set is refused with the way out") {
  test::TempDir tmp;
  WriteSet(tmp.path(), SomeRecords(2), 2);
  EditManifest(tmp.path(), [](nlohmann::json& m) { m["format_version"] = 1; });
  const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
  CHECK(msg.find("version 1 is not supported") != std::string::npos);
  CHECK(msg.find("crop_shards --overwrite") != std::string::npos);
}

// An image with three overlapping records cut from it, as crop_shards makes them.
struct CutImage {
  cv::Mat image;
  std::vector<ShardRecord> records;
};

CutImage MakeCutImage(int seed) {
  CutImage c;
  c.image.create(40, 64, CV_8UC3);
  cv::RNG rng(static_cast<uint64_t>(seed) + 11);
  rng.fill(c.image, cv::RNG::UNIFORM, 0, 256);
  const cv::Rect boxes[] = {{0, 0, 32, 16}, {32, 24, 32, 16}, {13, 5, 32, 16}};
  for (int k = 0; k < 3; ++k) {
    ShardRecord r;
    r.image = c.image(boxes[k]);
    r.target.create(2, 4, CV_32F);
    rng.fill(r.target, cv::RNG::UNIFORM, 0.0, 1.0);
    r.source = StrCat("IMG_", seed, ".jpg");
    r.box = {boxes[k].x, boxes[k].y, boxes[k].width, boxes[k].height};
    r.count = k + seed;
    r.density_sum = k * 0.5;
    r.crop = k;
    r.scale = {0.5 + seed, 0.25};
    c.records.push_back(r);
  }
  return c;
}

TEST_CASE("an image is stored once and its overlapping records are boxes in it, read back exactly") {
  test::TempDir tmp;
  std::vector<CutImage> images = {MakeCutImage(1), MakeCutImage(2), MakeCutImage(3)};
  {
    ShardSetWriter set(tmp.path(), {"train"}, /*records_per_shard=*/4, 0);
    for (const auto& c : images) set.split("train").Add(EncodeImage(c.image, c.records, 0));
    set.Finish();
    // Records of an image stay together: 3 + 3 (past 4) | 3.
    REQUIRE(set.shards("train").size() == 2);
    CHECK(set.shards("train")[0].records == 6);
  }
  ShardSet set(tmp.path());
  REQUIRE(set.size("train") == 9);
  for (int i = 0; i < 9; ++i) {
    const ShardRecord& want = images[static_cast<size_t>(i / 3)].records[static_cast<size_t>(i % 3)];
    const ShardRecord got = set.Read("train", i);
    CHECK(SameMat(got.image, want.image));
    CHECK(got.image.isContinuous());
    CHECK(SameMat(got.target, want.target));
    CHECK(got.box == want.box);
    CHECK(got.count == want.count);
    CHECK(got.scale == want.scale);
    CHECK(set.Info("train", i).scale == want.scale);
  }
  // The image's pixels are in the file once: three 32x16 boxes of a 64x40
  // image would be 4608 bytes stored one by one, the image is 7680.
  uint64_t bytes = 0;
  for (const auto& s : set.manifest()["splits"]["train"]["shards"]) bytes += s["bytes"].get<uint64_t>();
  CHECK(bytes < 3 * (64 * 40 * 3) + 9 * 4096);
}

TEST_CASE("a record written on its own is an image of its own; its labels keep their box") {
  test::TempDir tmp;
  const auto records = SomeRecords(2);
  WriteSet(tmp.path(), records, 8);
  ShardSet set(tmp.path());
  const ShardRecord r = set.Read("train", 1);
  CHECK(r.box == records[1].box);  // (1, 2, ...): a label, not where the pixels are
  CHECK(SameMat(r.image, records[1].image));
  CHECK(r.scale == std::array<double, 2>{1.0, 1.0});
}

// Overwrites element `k` of the int32 index dataset `name` of the first train
// shard, and brings the manifest's size and checksum up to date.
void RewriteIndexInt(const fs::path& dir, const char* name, size_t k, int32_t value) {
  const fs::path shard = dir / "train" / "shard-00000.h5";
  {
    h5::Lock lock;
    const hid_t f = H5Fopen(shard.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    const hid_t ds = H5Dopen2(f, (std::string("index/") + name).c_str(), H5P_DEFAULT);
    REQUIRE(ds >= 0);
    const hid_t space = H5Dget_space(ds);
    std::vector<int32_t> v(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
    REQUIRE(H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0);
    v.at(k) = value;
    CHECK(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
  }
  RefreshFirstShard(dir);
}

TEST_CASE("an index whose record lies outside its image, or names no image, is refused at open") {
  const struct {
    const char* dataset;
    size_t element;
    int32_t value;
  } cases[] = {{"at", 2, 33}, {"at", 3, -1}, {"image", 1, 5}, {"image_shape", 0, 0}, {"image_shape", 1, 20000}};
  for (const auto& c : cases) {
    CAPTURE(c.dataset);
    CAPTURE(c.element);
    test::TempDir tmp;
    {
      ShardSetWriter set(tmp.path(), {"train"}, 8, 0);
      const CutImage img = MakeCutImage(1);
      set.split("train").Add(EncodeImage(img.image, img.records, 0));
      set.Finish();
    }
    CHECK(ShardSet(tmp.path()).size("train") == 3);
    RewriteIndexInt(tmp.path(), c.dataset, c.element, c.value);
    const std::string msg = ErrorOf([&] { ShardSet set(tmp.path()); });
    CHECK(msg.find("shard-00000.h5") != std::string::npos);
    CHECK(msg.find("corrupt shard") != std::string::npos);
  }
}

TEST_CASE("shards are readable from Python's h5py as documented" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(fs::exists(test::Python()) && test::Run(test::Python() + " -c 'import h5py, numpy'") == 0,
                  test::kNeedPython, "/usr/bin/python3 with h5py not available");
  test::TempDir tmp;
  const auto records = SomeRecords(3, true);
  WriteSet(tmp.path(), records, 2, 4);
  const fs::path script = tmp / "check.py";
  std::ofstream(script) << "import h5py, json, zlib, sys\n"
                           "d = sys.argv[1]\n"
                           "m = json.load(open(d + '/manifest.json'))\n"
                           "s = m['splits']['train']['shards'][1]\n"
                           "assert zlib.crc32(open(d + '/' + s['file'], 'rb').read()) == s['crc32']\n"
                           "with h5py.File(d + '/' + s['file'], 'r') as f:\n"
                           "    r = f['records/000000']\n"
                           "    img = f['images/%06d' % r.attrs['image']][()]\n"
                           "    t = r['target'][()]\n"
                           "    assert zlib.crc32(t.tobytes(), zlib.crc32(img.tobytes())) == r.attrs['crc32']\n"
                           "    print(img.shape[0], img.shape[1], int(img[0, 0, 0]), r.attrs['source'].decode(),\n"
                           "          [int(v) for v in r.attrs['box']], f['index/source'][0].decode())\n";
  const fs::path log = tmp / "out.txt";
  REQUIRE(test::Run(test::Python() + " " + script.string() + " " + tmp.path().string(), log) == 0);
  const ShardRecord& r = records[2];
  CHECK(ReadTextFile(log) == StrCat(r.image.rows, " ", r.image.cols, " ", int(r.image.at<cv::Vec3b>(0, 0)[0]), " ",
                                    r.source, " [", r.box[0], ", ", r.box[1], ", ", r.box[2], ", ", r.box[3], "] ",
                                    r.source, "\n"));
}

}  // namespace
}  // namespace csr
