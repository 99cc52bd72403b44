// Kill campaigns: gt_gen and crop_shards (the built binaries, on a small
// make_synthetic dataset) killed with SIGKILL at seeded random moments, each
// time rerun to completion, must end with outputs equal to a clean run's and
// no temporaries: what an atomic-output tool promises, checked under fire.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"
#include "common/shards/shards.h"
#include "preprocess/density.h"
#include "tests/test_util.h"

namespace csr {
namespace {

constexpr int kKills = 8;
constexpr uint32_t kSeed = 20260602;

std::string Q(const fs::path& p) { return "'" + p.string() + "'"; }

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Starts `argv` and SIGKILLs it after `delay` seconds (unless it ended first).
// Returns true when it was killed.
bool RunAndKill(const std::vector<std::string>& argv, double delay) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(delay));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

void CheckNoTemporaries(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    CHECK_MESSAGE(!IsAtomicTemp(e.path()), e.path().string());
  }
}

std::vector<fs::path> DensityMaps(const fs::path& root) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.path().extension() == ".h5") out.push_back(fs::relative(e.path(), root));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The density bytes and every attribute gt_gen writes, as one string: HDF5
// files carry object times, so whole-file bytes differ between runs.
std::string MapContent(const fs::path& p) {
  h5::Lock lock;
  const h5::Hid f_file = h5::OpenRead(p.string());
  const hid_t f = f_file.get();
  const cv::Mat d = h5::ReadMat2f(f, "density", p.string());
  std::string s(reinterpret_cast<const char*>(d.data), d.total() * d.elemSize());
  for (const char* key : {"annotation_count", "head_pixels", "merged_points", "outside_points", kDensityCrcAttr}) {
    s += StrCat("|", key, "=", h5::GetAttrInt(f, key, p.string()));
  }
  s += StrCat("|density_sum=", h5::GetAttrDouble(f, "density_sum", p.string()));
  for (const char* key : {"mode", "kernel", "sigma_rule", "border", "settings", "source_image", "tool_version"}) {
    s += StrCat("|", key, "=", h5::GetAttrString(f, key, p.string()));
  }
  return s;
}

void MakeSynthetic(const fs::path& root) {
  REQUIRE(test::Run(test::Tool("make_synthetic") + " --out " + Q(root) + " --images 16 --test-images 4",
                    root.parent_path() / "syn.log") == 0);
}

TEST_CASE("gt_gen killed at random moments, rerun each time, ends equal to a clean run") {
  test::TempDir tmp;
  MakeSynthetic(tmp / "clean");
  fs::copy(tmp / "clean", tmp / "killed", fs::copy_options::recursive);
  const std::string tool = test::Tool("gt_gen");
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(test::Run(tool + " --quiet --threads 2 --root " + Q(tmp / "clean"), tmp / "clean.log") == 0);
  const double clean_seconds = SecondsSince(start);
  const std::vector<fs::path> maps = DensityMaps(tmp / "clean");
  REQUIRE(maps.size() == 20);

  std::mt19937 rng(kSeed);
  int killed = 0;
  for (int i = 0; i < kKills; ++i) {
    CAPTURE(i);
    for (const auto& m : maps) fs::remove(tmp / "killed" / m);  // each killed run starts from nothing
    const double delay = std::uniform_real_distribution<double>(0.0, clean_seconds)(rng);
    killed += RunAndKill({tool, "--quiet", "--threads", "2", "--root", (tmp / "killed").string()}, delay);
    REQUIRE(test::Run(tool + " --quiet --threads 2 --root " + Q(tmp / "killed"), tmp / "rerun.log") == 0);
    REQUIRE(DensityMaps(tmp / "killed") == maps);
    for (const auto& m : maps) CHECK_MESSAGE(MapContent(tmp / "killed" / m) == MapContent(tmp / "clean" / m), m);
    for (const char* list : {"part_A_train.json", "part_A_test.json"}) {
      CHECK(ReadTextFile(tmp / "killed" / list).size() > 2);
    }
    CheckNoTemporaries(tmp / "killed");
  }
  CHECK(killed >= kKills / 2);  // most kills must land mid-run, or the campaign tests nothing
}

TEST_CASE("crop_shards killed at random moments, rerun each time, ends byte-equal to a clean run") {
  test::TempDir tmp;
  MakeSynthetic(tmp / "data");
  REQUIRE(test::Run(test::Tool("gt_gen") + " --quiet --root " + Q(tmp / "data"), tmp / "gt.log") == 0);
  const std::string tool = test::Tool("crop_shards");
  const auto args = [&](const fs::path& out) {
    return std::vector<std::string>{
        tool,    "--quiet",   "--threads", "2", "--records-per-shard", "5", "--root", (tmp / "data").string(),
        "--out", out.string()};
  };
  const auto command = [&](const fs::path& out) {
    std::string c;
    for (const auto& a : args(out)) c += Q(a) + " ";
    return c;
  };
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(test::Run(command(tmp / "clean"), tmp / "clean.log") == 0);
  const double clean_seconds = SecondsSince(start);
  std::vector<fs::path> shards;
  for (const auto& e : fs::recursive_directory_iterator(tmp / "clean")) {
    if (e.path().extension() == ".h5") shards.push_back(fs::relative(e.path(), tmp / "clean"));
  }
  REQUIRE(shards.size() > 4);
  const auto manifest = nlohmann::json::parse(ReadTextFile(tmp / "clean" / kManifestName));

  std::mt19937 rng(kSeed + 1);
  int killed = 0;
  for (int i = 0; i < kKills; ++i) {
    CAPTURE(i);
    const fs::path out = tmp / "killed";
    fs::remove_all(out);
    const double delay = std::uniform_real_distribution<double>(0.0, clean_seconds)(rng);
    killed += RunAndKill(args(out), delay);
    REQUIRE(test::Run(command(out), tmp / "rerun.log") == 0);
    for (const auto& s : shards) CHECK_MESSAGE(ReadTextFile(out / s) == ReadTextFile(tmp / "clean" / s), s);
    const auto m = nlohmann::json::parse(ReadTextFile(out / kManifestName));
    CHECK(m["splits"] == manifest["splits"]);
    CHECK(m["totals"] == manifest["totals"]);
    ShardSet(out).Verify();
    CheckNoTemporaries(out);
  }
  CHECK(killed >= kKills / 2);
}

}  // namespace
}  // namespace csr
