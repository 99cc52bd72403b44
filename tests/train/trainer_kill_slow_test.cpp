// The kill campaign (docs/training.md): the trainer is killed with SIGKILL at seeded random
// moments (between steps, during checkpoint writes, during validation or
// start-up), resumed each time, and must end exactly where a run straight
// through ends: bitwise equal weights, momentum, RNG state and log, and no
// temporaries left behind.
#include "tests/train/train_test_util.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "common/base/fs.h"
#include "tests/test_util.h"
#include "train/torch_compat.h"
#include "train/trainer.h"

extern char** environ;

namespace csr {
namespace {

using test::TempDir;

// Starts the trainer with stdout/stderr appended to `log`.
pid_t Spawn(const std::string& args, const fs::path& log) {
  const std::string cmd = "exec " + test::Tool("trainer") + " " + args + " >>" + log.string() + " 2>&1";
  const char* argv[] = {"sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0);
  return pid;
}

// Waits for the process; returns its exit status, or -signal.
int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

struct Loaded {
  CSRNet model;
  TrainOptions opts;
  FusedSGD opt = MakeOptimizer(model, opts);
  TrainState state;
  torch::Tensor rng;
  explicit Loaded(const fs::path& path) {
    state = LoadCheckpoint(path.string(), model, opt);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng = gen.get_state();
  }
  const torch::Tensor& Momentum(size_t i) {
    const auto& p = opt.param_groups()[0].params()[i];
    return static_cast<torch::optim::SGDParamState&>(*opt.state().at(compat::StateKey(p))).momentum_buffer();
  }
};

TEST_CASE(
    "killed with SIGKILL at random moments and resumed each time, training ends bitwise where a straight run ends") {
  TempDir tmp;
  const fs::path shards = tmp / "shards", log = tmp / "log.txt";
  test::WriteSyntheticShards(shards, {/*train=*/3, /*test=*/1});  // 6 patches per epoch
  auto args = [&](const std::string& out) {
    return shards.string() + " --out " + (tmp / out).string() +
           " --epochs 2 --threads 1 --workers 1 --seed 5 --lr 1e-5 --checkpoint-every 1";
  };
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(Wait(Spawn(args("straight"), log)) == 0);
  const double straight_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const fs::path run = tmp / "killed", ckpt = run / "checkpoint.pt";
  std::mt19937 rng(20240611);
  // Kill moments from start-up to a few steps in (a step with its checkpoint
  // takes about a second here), so that most processes die before the end.
  std::uniform_real_distribution<double> moment(0.3, std::max(1.0, straight_s / 5));
  int kills = 0, finished_early = 0, resumed = 0;
  for (int round = 0; round < 7; ++round) {
    const bool resume = fs::exists(ckpt);
    resumed += resume;
    const pid_t pid = Spawn(resume ? "--resume " + ckpt.string() : args("killed"), log);
    std::this_thread::sleep_for(std::chrono::duration<double>(moment(rng)));
    kill(pid, SIGKILL);
    const int rc = Wait(pid);
    if (rc == -SIGKILL) {
      ++kills;
    } else {
      ++finished_early;  // it was done before the kill: fine, the rest resume a finished run
      INFO(ReadTextFile(log));
      REQUIRE(rc == 0);
    }
  }
  // And on to the end.
  const int rc = Wait(Spawn(fs::exists(ckpt) ? "--resume " + ckpt.string() : args("killed"), log));
  INFO(ReadTextFile(log));
  REQUIRE(rc == 0);
  MESSAGE(kills << " SIGKILLs, " << resumed << " resumes, " << finished_early << " runs done before their kill; "
                << "straight run " << straight_s << " s");
  CHECK(kills >= 5);

  Loaded a(tmp / "straight" / "checkpoint.pt");
  Loaded b(ckpt);
  CHECK(a.state.epoch == 2);
  CHECK(b.state.epoch == 2);
  CHECK(b.state.step == a.state.step);
  CHECK(b.state.batch == 0);
  CHECK(b.state.best_mae == a.state.best_mae);  // bitwise: same doubles
  CHECK(b.state.best_epoch == a.state.best_epoch);
  CHECK(torch::equal(a.rng, b.rng));
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].key());
    CHECK(torch::equal(pa[i].value(), pb[i].value()));
    CHECK(torch::equal(a.Momentum(i), b.Momentum(i)));
  }
  // The log holds each epoch once, with the straight run's numbers.
  CHECK(ReadTextFile(run / "train_log.jsonl").size() > 0);
  std::istringstream la(ReadTextFile(tmp / "straight" / "train_log.jsonl")), lb(ReadTextFile(run / "train_log.jsonl"));
  int lines = 0;
  for (std::string x, y; std::getline(la, x) && std::getline(lb, y); ++lines) {
    const auto ja = nlohmann::json::parse(x), jb = nlohmann::json::parse(y);
    CHECK(ja["epoch"] == jb["epoch"]);
    CHECK(ja["train_loss"] == jb["train_loss"]);
    CHECK(ja["mae"] == jb["mae"]);
    CHECK(ja["steps"] == jb["steps"]);
  }
  CHECK(lines == 2);
  // Nothing but the run's files: no temporaries of killed writes.
  const std::set<std::string> expected = {"config.json", "train_log.jsonl", "checkpoint.pt", "model_best.pt",
                                          "model_best.h5"};
  for (const auto& entry : fs::directory_iterator(run)) {
    CHECK_MESSAGE(expected.count(entry.path().filename().string()), entry.path().filename().string());
  }
}

}  // namespace
}  // namespace csr
