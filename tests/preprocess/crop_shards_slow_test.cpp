// crop_shards end to end with the other tools' binaries (make_synthetic ->
// gt_gen -> crop_shards, as the demo runs them), including the mirrored
// layout, and a run killed with SIGKILL part-way through.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/shards/shards.h"
#include "tests/test_util.h"

namespace csr {
namespace {

std::string Q(const fs::path& p) { return "'" + p.string() + "'"; }

void MakeData(const fs::path& root, const std::string& extra) {
  REQUIRE(test::Run(test::Tool("make_synthetic") + " --out " + Q(root) + " " + extra, root.parent_path() / "syn.log") ==
          0);
  REQUIRE(test::Run(test::Tool("gt_gen") + " --quiet --root " + Q(root) + " --part A", root.parent_path() / "gt.log") ==
          0);
}

bool HasCommittedShard(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".h5") return true;
  }
  return false;
}

TEST_CASE("make_synthetic, gt_gen and crop_shards run end to end in both folder layouts") {
  for (const std::string layout : {"official", "mirrored"}) {
    CAPTURE(layout);
    test::TempDir tmp;
    MakeData(tmp / "ShanghaiTech", "--images 6 --test-images 3 --layout " + layout);
    const fs::path out = tmp / "shards";
    const fs::path log = tmp / "crop.log";
    REQUIRE(test::Run(test::Tool("crop_shards") + " --root " + Q(tmp / "ShanghaiTech") + " --part A --out " + Q(out),
                      log) == 0);
    ShardSet set(out);
    CHECK(set.size("train") == 6 * 9);
    CHECK(set.size("test") == 3);
    set.Verify();
    for (int64_t i = 0; i < set.size("train"); i += 7) {
      const ShardRecord r = set.Read("train", i);
      CHECK(r.image.cols == r.box[2]);
      CHECK(cv::sum(r.target)[0] == doctest::Approx(r.density_sum).epsilon(1e-4));
    }
    // gt_gen's settings reached the manifest.
    CHECK(set.manifest()["ground_truth"]["mode"] == "reference");
    CHECK(set.manifest()["ground_truth"]["maps_without_settings"] == 0);
    const fs::path inspect = tmp / "inspect.txt";
    REQUIRE(test::Run(test::Tool("crop_shards") + " --inspect " + Q(out) + " --verify", inspect) == 0);
    CHECK(ReadTextFile(inspect).find("totals: 57 records") != std::string::npos);
  }
}

TEST_CASE("a run killed part-way leaves no manifest, and the rerun starts clean") {
  test::TempDir tmp;
  MakeData(tmp / "ShanghaiTech", "--images 40 --test-images 4 --min-size 600 --max-size 1024 --jpeg-quality 95");
  const fs::path out = tmp / "shards";
  const std::string tool = test::Tool("crop_shards");
  const std::string root = (tmp / "ShanghaiTech").string();
  const pid_t pid = fork();
  if (pid == 0) {
    execl(tool.c_str(), tool.c_str(), "--quiet", "--threads", "1", "--records-per-shard", "3", "--root", root.c_str(),
          "--out", out.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill it as soon as its first shard is complete: mid-run, with shards and a temporary on disk.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!HasCommittedShard(out / "train") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE_MESSAGE(WIFSIGNALED(status), "crop_shards finished before it could be killed");
  CHECK_FALSE(fs::exists(out / kManifestName));
  CHECK_THROWS_WITH_AS(ShardSet{out}, doctest::Contains("incomplete shard set"), csr::Error);

  REQUIRE(test::Run(tool + " --quiet --threads 2 --records-per-shard 3 --root " + Q(root) + " --out " + Q(out),
                    tmp / "rerun.log") == 0);
  ShardSet set(out);
  CHECK(set.size("train") == 40 * 9);
  set.Verify();
  int64_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    CHECK_FALSE(IsAtomicTemp(e.path()));
    files += e.path().extension() == ".h5";
  }
  // A shard holds whole images: one per train image (9 records >= 3), and 4 test records / 3 rounded up.
  CHECK(files == 40 + 2);
}

}  // namespace
}  // namespace csr
