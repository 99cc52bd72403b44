// Training runs on tiny synthetic shards: the loss goes down, resuming is
// exact, SIGTERM checkpoints, a diverging loss stops cleanly.
#include "tests/train/train_test_util.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "common/base/fs.h"
#include "tests/test_util.h"
#include "train/evaluate.h"
#include "train/torch_compat.h"
#include "train/trainer.h"

#include <torch/nn/modules/batchnorm.h>

extern char** environ;

namespace csr {
namespace {

using test::TempDir;

int Trainer(const std::string& args, const fs::path& log) { return test::Run(test::Tool("trainer") + " " + args, log); }

std::vector<nlohmann::json> ReadLog(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(ReadTextFile(run / "train_log.jsonl"));
  for (std::string line; std::getline(lines, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Largest absolute difference between two checkpoints' weights and momentum.
double CheckpointDiff(const fs::path& a, const fs::path& b, TrainState* sa, TrainState* sb) {
  TrainOptions opts;
  CSRNet ma, mb;
  auto oa = MakeOptimizer(ma, opts), ob = MakeOptimizer(mb, opts);
  *sa = LoadCheckpoint(a.string(), ma, oa);
  *sb = LoadCheckpoint(b.string(), mb, ob);
  double diff = 0;
  for (const auto& item : ma->named_parameters()) {
    diff = std::max(diff, (item.value() - mb->named_parameters()[item.key()]).abs().max().item<double>());
  }
  // Optimizer state is keyed by each parameter's TensorImpl address: pair
  // the buffers up through the parameter order.
  const auto& pa = oa.param_groups()[0].params();
  const auto& pb = ob.param_groups()[0].params();
  REQUIRE(pa.size() == pb.size());
  REQUIRE(oa.state().size() == pa.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto& buf_a =
        static_cast<torch::optim::SGDParamState&>(*oa.state().at(compat::StateKey(pa[i]))).momentum_buffer();
    const auto& buf_b =
        static_cast<torch::optim::SGDParamState&>(*ob.state().at(compat::StateKey(pb[i]))).momentum_buffer();
    diff = std::max(diff, (buf_a - buf_b).abs().max().item<double>());
  }
  return diff;
}

struct Fixture {
  TempDir tmp;
  fs::path shards = tmp / "shards";
  Fixture() { test::WriteSyntheticShards(shards, {/*train=*/4, /*test=*/2}); }
  std::string Args(const std::string& out) const {
    return shards.string() + " --out " + (tmp / out).string() + " --threads 1 --seed 3 --lr 1e-5 ";
  }
};

TEST_CASE("--batch-norm: resumed equals straight, model_best holds the folded network") {
  TempDir tmp;
  const fs::path shards = tmp / "shards", log = tmp / "log.txt";
  test::WriteSyntheticShards(shards, {/*train=*/2, /*test=*/1});
  const std::string args =
      shards.string() + " --threads 2 --lr 1e-4 --optimizer adam --init he --batch-norm --epochs 2 --out ";
  REQUIRE(Trainer(args + (tmp / "straight").string(), log) == 0);
  CHECK(ReadTextFile(log).find("with batch normalisation") != std::string::npos);
  REQUIRE(Trainer(args + (tmp / "split").string() + " --max-steps 3", log) == 0);
  // Resumed without the flag: the checkpoint's config has it.
  REQUIRE(Trainer("--resume " + (tmp / "split/checkpoint.pt").string() + " --max-steps 0", log) == 0);
  CHECK(nlohmann::json::parse(ReadTextFile(tmp / "split/config.json")).value("batch-norm", false));
  TrainOptions opts;
  opts.optimizer = OptimizerKind::kAdam;
  CSRNet a(Backend::kB, true), b(Backend::kB, true);
  auto oa = MakeRunOptimizer(a, opts), ob = MakeRunOptimizer(b, opts);
  const TrainState sa = LoadCheckpoint((tmp / "straight/checkpoint.pt").string(), a, *oa);
  LoadCheckpoint((tmp / "split/checkpoint.pt").string(), b, *ob);
  double diff = 0;
  for (const auto& item : a->named_parameters()) {
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
  }
  for (const auto& item : a->named_buffers()) {
    diff = std::max(diff, (item.value() - b->named_buffers()[item.key()]).abs().max().item<double>());
  }
  CHECK(diff <= 1e-5);
  // The running statistics moved off their start (mean 0, variance 1).
  CHECK(a->frontend[1]->as<torch::nn::BatchNorm2d>()->running_mean.abs().max().item<double>() > 1e-3);

  // model_best.pt and .h5 hold a plain CSRNet whose test MAE is the one the
  // trainer measured with the batch-normalised network in eval mode.
  CSRNet best = LoadModel((tmp / "straight/model_best.pt").string());
  CHECK_FALSE(best->batch_norm());
  const int evaluated = test::RunInProcess(RunEvaluate, "evaluate",
                                           "--threads 2 --weights " + (tmp / "straight/model_best.h5").string() + " " +
                                               shards.string() + " --json " + (tmp / "eval.json").string(),
                                           log);
  INFO(ReadTextFile(log));
  REQUIRE(evaluated == 0);
  const double mae = nlohmann::json::parse(ReadTextFile(tmp / "eval.json"))["mae"].get<double>();
  CHECK(mae == doctest::Approx(sa.best_mae).epsilon(1e-4));
}

TEST_CASE("a short training on synthetic shards lowers the loss") {
  Fixture f;
  REQUIRE(Trainer(f.Args("run") + "--epochs 3 --threads 2", f.tmp / "log.txt") == 0);
  const auto log = ReadLog(f.tmp / "run");
  REQUIRE(log.size() == 3);
  MESSAGE("train loss " << log[0]["train_loss"] << " -> " << log[2]["train_loss"] << ", MAE " << log[0]["mae"] << " -> "
                        << log[2]["mae"]);
  CHECK(log[2]["train_loss"].get<double>() < log[0]["train_loss"].get<double>());
  CHECK(log[2]["steps"] == 24);
  CHECK(ReadTextFile(f.tmp / "log.txt").find("finished") != std::string::npos);
}

TEST_CASE("2 epochs straight equal 1 epoch + resume + 1 epoch, also resuming mid-epoch") {
  Fixture f;
  const fs::path log = f.tmp / "log.txt";
  REQUIRE(Trainer(f.Args("straight") + "--epochs 2", log) == 0);
  REQUIRE(Trainer(f.Args("split") + "--epochs 1", log) == 0);
  REQUIRE(Trainer("--resume " + (f.tmp / "split/checkpoint.pt").string() + " --epochs 2", log) == 0);
  REQUIRE(Trainer(f.Args("mid") + "--epochs 2 --max-steps 3", log) == 0);
  REQUIRE(Trainer("--pre " + (f.tmp / "mid/checkpoint.pt").string() + " --max-steps 0", log) == 0);

  TrainState a, b;
  const double split = CheckpointDiff(f.tmp / "straight/checkpoint.pt", f.tmp / "split/checkpoint.pt", &a, &b);
  CHECK(a.epoch == 2);
  CHECK(b.epoch == 2);
  CHECK(a.step == b.step);
  CHECK(a.best_mae == b.best_mae);
  CHECK(split <= 1e-6);
  const double mid = CheckpointDiff(f.tmp / "straight/checkpoint.pt", f.tmp / "mid/checkpoint.pt", &a, &b);
  CHECK(b.epoch == 2);
  CHECK(mid <= 1e-6);
  MESSAGE("max weight/momentum difference: resumed at the epoch boundary " << split << ", mid-epoch " << mid);

  // The logs agree too, with the partial epoch's line replaced.
  const auto straight = ReadLog(f.tmp / "straight"), resumed = ReadLog(f.tmp / "split"),
             mid_log = ReadLog(f.tmp / "mid");
  REQUIRE(straight.size() == 2);
  REQUIRE(resumed.size() == 2);
  REQUIRE(mid_log.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(resumed[i]["train_loss"] == straight[i]["train_loss"]);
    CHECK(mid_log[i]["train_loss"].get<double>() == doctest::Approx(straight[i]["train_loss"].get<double>()));
    CHECK(resumed[i]["mae"] == straight[i]["mae"]);
    CHECK_FALSE(mid_log[i].contains("partial"));
  }
}

TEST_CASE("SIGTERM finishes the step, writes the checkpoint and says how to resume") {
  Fixture f;
  const fs::path run = f.tmp / "run", log = f.tmp / "log.txt";
  const std::string cmd =
      test::Tool("trainer") + " " + f.Args("run") + "--epochs 100 --threads 2 >" + log.string() + " 2>&1";
  pid_t pid = 0;
  const char* argv[] = {"sh", "-c", cmd.c_str(), nullptr};
  // exec replaces the shell (a single command), so the signal reaches the trainer.
  const std::string exec_cmd = "exec " + cmd;
  argv[2] = exec_cmd.c_str();
  REQUIRE(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!fs::exists(run / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(fs::exists(run / "checkpoint.pt"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // into the next epoch
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string text = ReadTextFile(log);
  INFO(text);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGTERM);
  CHECK(text.find("SIGTERM") != std::string::npos);
  CHECK(text.find("--resume " + (run / "checkpoint.pt").string()) != std::string::npos);
  TrainOptions opts;
  CSRNet model;
  auto opt = MakeOptimizer(model, opts);
  const TrainState s = LoadCheckpoint((run / "checkpoint.pt").string(), model, opt);
  CHECK(s.epoch >= 1);
  CHECK(s.step == s.epoch * 8 + s.batch);
  // And it goes on from there.
  REQUIRE(Trainer("--resume " + (run / "checkpoint.pt").string() + " --epochs " + std::to_string(s.epoch + 1), log) ==
          0);
  CHECK(ReadLog(run).size() == static_cast<size_t>(s.epoch + 1));
}

TEST_CASE("a diverging loss stops training with a clear message and keeps the last good checkpoint") {
  Fixture f;
  const fs::path run = f.tmp / "run", log = f.tmp / "log.txt";
  REQUIRE(Trainer(f.Args("run") + "--epochs 1", log) == 0);
  const std::string before = ReadTextFile(run / "checkpoint.pt");
  const int rc = Trainer("--resume " + (run / "checkpoint.pt").string() + " --epochs 3 --lr 1e8", log);
  const std::string text = ReadTextFile(log);
  INFO(text);
  CHECK(rc == 1);
  CHECK(text.find("loss became") != std::string::npos);
  CHECK(text.find((run / "checkpoint.pt").string()) != std::string::npos);
  CHECK(ReadTextFile(run / "checkpoint.pt") == before);
}

}  // namespace
}  // namespace csr
