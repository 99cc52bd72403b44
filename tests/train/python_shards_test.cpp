// python/csrnet_shards.py against the C++ loader (train/dataset.h): the same
// records give the same normalised images and targets in both mirror states,
// the same labels, and the same refusals. The C++ side writes what it loads;
// tests/train/python_shards_check.py loads the same records in Python and
// compares. Also runs docs/shard_format.md's DataLoader snippet and
// tools/train_pytorch_example.py.
#include "tests/train/train_test_util.h"

#include <fstream>
#include <iomanip>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/dataset.h"

namespace csr {
namespace {

using test::TempDir;

const std::string kPython = test::Python();
const std::string kChecker = CSR_SOURCE_DIR "/tests/train/python_shards_check.py";
const fs::path kShardsV2 = fs::path(CSR_SOURCE_DIR) / "tests" / "data" / "shards_v2";

bool PythonHas(const std::string& modules) {
  return fs::exists(kPython) && test::Run(kPython + " -c 'import " + modules + "'", "/dev/null") == 0;
}

// A shard set from the real tools: make_synthetic's images through
// crop_shards (quarters and random crops of images stored once, deflated, a
// few records per shard so the train split spans several shards).
fs::path CropShardsSet(const TempDir& tmp) {
  const fs::path data = tmp / "data", set = tmp / "cropped";
  REQUIRE(test::Run(test::Tool("make_synthetic") + " --out " + data.string() +
                        " --images 3 --test-images 2 --min-size 64 --max-size 100 --min-heads 3 --max-heads 12"
                        " --seed 11",
                    tmp / "make_synthetic.txt") == 0);
  const int rc = test::Run(test::Tool("crop_shards") + " --root " + data.string() + " --part A --out " + set.string() +
                               " --density annotations --compress 1 --records-per-shard 5 --quiet",
                           tmp / "crop_shards.txt");
  REQUIRE_MESSAGE(rc == 0, ReadTextFile(tmp / "crop_shards.txt"));
  return set;
}

// Every example of both splits in both mirror states as the C++ loader gives
// it (EXPORT/SPLIT-MIRROR-INDEX.f32: image then target, float32) and every
// record's labels, listed in EXPORT/examples.txt (python_shards_check.py's
// format). Returns the number of examples.
int64_t ExportExamples(const fs::path& set, const fs::path& out) {
  fs::create_directories(out);
  auto shards = std::make_shared<const ShardSet>(set);
  std::ofstream list(out / "examples.txt");
  list << std::setprecision(17);
  int64_t examples = 0;
  for (const std::string split : {"train", "test"}) {
    for (const bool mirror : {false, true}) {
      ShardDataset dataset(shards, split, mirror);
      list << "size\t" << split << '\t' << mirror << '\t' << dataset.size().value() << '\n';
      for (size_t i = 0; i < dataset.size().value(); ++i) {
        const torch::data::Example<> e = dataset.get(i);
        const torch::Tensor image = e.data.contiguous(), target = e.target.contiguous();
        std::ofstream f(out / StrCat(split, "-", mirror, "-", i, ".f32"), std::ios::binary);
        f.write(reinterpret_cast<const char*>(image.data_ptr<float>()),
                static_cast<std::streamsize>(image.numel() * sizeof(float)));
        f.write(reinterpret_cast<const char*>(target.data_ptr<float>()),
                static_cast<std::streamsize>(target.numel() * sizeof(float)));
        REQUIRE(f.good());
        list << "example\t" << split << '\t' << mirror << '\t' << i << '\t' << image.size(1) << '\t' << image.size(2)
             << '\n';
        ++examples;
      }
    }
    for (int64_t r = 0; r < shards->size(split); ++r) {
      const ShardRecord rec = shards->Read(split, r);
      list << "record\t" << split << '\t' << r << '\t' << rec.source << '\t' << rec.count << '\t' << rec.crop << '\t'
           << rec.density_sum << '\t' << rec.box[0] << '\t' << rec.box[1] << '\t' << rec.box[2] << '\t' << rec.box[3]
           << '\t' << rec.scale[0] << '\t' << rec.scale[1] << '\n';
    }
  }
  REQUIRE(list.good());
  return examples;
}

// Runs python_shards_check.py; returns its output (the test fails unless it exits 0).
std::string Check(const std::string& mode, const fs::path& set, const fs::path& out, const TempDir& tmp) {
  const fs::path log = tmp / ("check-" + mode + ".txt");
  const int rc = test::Run(StrCat(kPython, " ", kChecker, " ", mode, " ", set.string(), " ", out.string()), log);
  const std::string text = ReadTextFile(log);
  CHECK_MESSAGE(rc == 0, text);
  return text;
}

TEST_CASE("the sets compared cover several shards, images shared by boxes off the origin, odd sizes, version 2") {
  TempDir tmp;
  const ShardSet set(CropShardsSet(tmp));
  CHECK(set.manifest()["splits"]["train"]["shards"].size() >= 2);
  CHECK(set.manifest()["settings"]["compress"] == 1);
  bool off_origin = false, odd_size = false;
  for (int64_t i = 0; i < set.size("train"); ++i) {
    const ShardRecord r = set.Read("train", i);
    off_origin = off_origin || (r.box[0] > 0 && r.box[1] > 0);
  }
  for (int64_t i = 0; i < set.size("test"); ++i) {
    const RecordInfo r = set.Info("test", i);
    odd_size = odd_size || r.width % 8 != 0 || r.height % 8 != 0;
  }
  CHECK(off_origin);
  CHECK(odd_size);
  CHECK(ShardSet(kShardsV2).manifest()["format_version"] == 2);
}

TEST_CASE("csrnet_shards gives the C++ loader's examples and labels, mirrored and not" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(PythonHas("h5py, numpy"), test::kNeedPython,
                  "Debian's python3-h5py / python3-numpy not installed (scripts/deps.sh test)");
  TempDir tmp;
  const fs::path fixture = tmp / "fixture";
  test::WriteSyntheticShards(fixture, {/*train=*/5, /*test=*/2});
  for (const fs::path& set : {CropShardsSet(tmp), fixture, kShardsV2}) {
    CAPTURE(set);
    const fs::path out = tmp / ("export-" + set.filename().string());
    const int64_t examples = ExportExamples(set, out);
    const ShardSet shards(set);
    const int64_t records = shards.size("train") + shards.size("test");
    REQUIRE(examples == 3 * records);  // unmirrored, then mirrored: two per record
    const std::string text = Check("compare", set, out, tmp);
    MESSAGE(text);
    CHECK(text.find(StrCat(examples, " examples match the C++ loader")) != std::string::npos);
#if defined(__x86_64__) && !defined(__FMA__)
    // No fused multiply-add in NormalizeImage: the same float32 operations, the same bits.
    CHECK(text.find(StrCat("(", examples, " bit-identical")) != std::string::npos);
#endif
    CHECK(text.find(StrCat(records, " records' labels match; verify() passed on ", records, " records")) !=
          std::string::npos);
  }
}

TEST_CASE("csrnet_shards refuses versions 1 and 99 with the C++ reader's message" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(PythonHas("h5py, numpy"), test::kNeedPython,
                  "Debian's python3-h5py / python3-numpy not installed (scripts/deps.sh test)");
  for (const int version : {1, 99}) {
    CAPTURE(version);
    TempDir tmp;
    const fs::path set = tmp / "set";
    test::WriteSyntheticShards(set, {/*train=*/2, /*test=*/1});
    nlohmann::json manifest = nlohmann::json::parse(ReadTextFile(set / kManifestName));
    manifest["format_version"] = version;
    WriteTextFileAtomic(set / kManifestName, manifest.dump(2));

    std::string expected = test::ErrorOf([&] { ShardSet s(set); });
    REQUIRE(expected.find(StrCat("shard format version ", version, " is not supported")) != std::string::npos);
    REQUIRE(expected.find("rebuild the set with crop_shards --overwrite") != std::string::npos);
    REQUIRE(expected.find("this build") != std::string::npos);
    expected.replace(expected.find("this build"), 10, "this reader");

    const fs::path log = tmp / "python.txt";
    const int rc = test::Run(StrCat(kPython, " -c \"import sys; sys.path.insert(0, '", CSR_SOURCE_DIR,
                                    "/python'); import csrnet_shards\ntry: csrnet_shards.ShardDataset(sys.argv[1], "
                                    "'train')\nexcept csrnet_shards.ShardError as e: sys.exit(str(e))\" ",
                                    set.string()),
                             log);
    CHECK(rc == 1);
    CHECK(ReadTextFile(log) == expected + "\n");
  }
}

TEST_CASE("csrnet_shards refuses damaged sets naming the file, where the C++ reader does" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(PythonHas("h5py, numpy"), test::kNeedPython,
                  "Debian's python3-h5py / python3-numpy not installed (scripts/deps.sh test)");
  TempDir tmp;
  const fs::path set = tmp / "set";
  test::WriteSyntheticShards(set, {/*train=*/4, /*test=*/1});
  const std::string text = Check("tamper", set, tmp / "damaged", tmp);
  CHECK(text.find("every damaged copy refused") != std::string::npos);
  // The C++ reader agrees on the changed target (record 1 only) and the stale manifest.
  const ShardSet target(tmp / "damaged" / "target");
  CHECK(target.Read("train", 0).count >= 0);
  test::ExpectError([&] { target.Read("train", 1); }, {"shard-00000.h5", "checksum mismatch"});
  test::ExpectError([&] { ShardSet(tmp / "damaged" / "stale").Verify(); }, {"shard-00000.h5", "checksum mismatch"});
}

TEST_CASE("the DataLoader snippet of docs/shard_format.md and tools/train_pytorch_example.py run on a shard set" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(PythonHas("torch, h5py, numpy"), test::kNeedPython,
                  "Debian's python3-torch / python3-h5py not installed (scripts/deps.sh test)");
  TempDir tmp;
  const fs::path set = tmp / "shards";
  test::WriteSyntheticShards(set, {/*train=*/3, /*test=*/2});
  const std::string doc = ReadTextFile(fs::path(CSR_SOURCE_DIR) / "docs" / "shard_format.md");
  const size_t section = doc.find("## Reading shards from Python");
  REQUIRE(section != std::string::npos);
  const size_t begin = doc.find("```python\n", section);
  REQUIRE(begin != std::string::npos);
  const size_t end = doc.find("```", begin + 10);
  std::ofstream(tmp / "snippet.py") << doc.substr(begin + 10, end - begin - 10);
  const std::string env = StrCat("PYTHONPATH=", CSR_SOURCE_DIR, "/python ");
  const fs::path log = tmp / "snippet.txt";
  CHECK_MESSAGE(test::Run(env + kPython + " " + (tmp / "snippet.py").string() + " " + set.string(), log) == 0,
                ReadTextFile(log));
  CHECK(ReadTextFile(log).find("6 training examples in 6 batches, 2 test images") != std::string::npos);

  const fs::path train_log = tmp / "train.txt";
  const int rc = test::Run(
      StrCat(kPython, " ", CSR_SOURCE_DIR, "/tools/train_pytorch_example.py ", set.string(), " --steps 3 --threads 2"),
      train_log);
  const std::string out = ReadTextFile(train_log);
  REQUIRE_MESSAGE(rc == 0, out);
  MESSAGE(out);
  for (const char* step : {"step 1/3 ", "step 2/3 ", "step 3/3 "}) CHECK(out.find(step) != std::string::npos);
  CHECK(out.find("nan") == std::string::npos);
}

}  // namespace
}  // namespace csr
