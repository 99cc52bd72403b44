// --precision auto: the spelling, the decision (a pure function of the
// timings), the bounded timing, a probe that changes nothing, the trainer's
// record and resume, the warning for an explicit bf16 that measures slower,
// and predict/evaluate (LibTorch and ONNX engines). Tests that need a
// decision fix it with CSR_PRECISION_PROBE_FAKE; the real probe runs on tiny
// inputs only, so nothing here depends on the CPU's bf16 speed.
#include "tests/train/train_test_util.h"

#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "deploy/predict.h"
#include "tests/deploy/onnx_test_util.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "tests/train/predict_test_util.h"
#include "train/evaluate.h"
#include "train/precision_probe.h"
#include "train/torch_compat.h"
#include "train/trainer.h"

namespace csr {
namespace {

using test::TempDir;
using Outcome = test::ToolOutcome;

constexpr const char* kFake = "CSR_PRECISION_PROBE_FAKE";

// Sets CSR_PRECISION_PROBE_FAKE (inherited by the tools the test runs) while
// alive; empty = unset.
class FakeProbe {
 public:
  explicit FakeProbe(const std::string& value) {
    if (value.empty()) {
      ::unsetenv(kFake);
    } else {
      ::setenv(kFake, value.c_str(), 1);
    }
  }
  ~FakeProbe() { ::unsetenv(kFake); }
  FakeProbe(const FakeProbe&) = delete;
  FakeProbe& operator=(const FakeProbe&) = delete;
};

constexpr const char* kBf16Faster = "fp32=1.0,bf16=0.5";
constexpr const char* kBf16Slower = "fp32=1.0,bf16=2.0";

bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A tiny shard set and the trainer run on it; stdout and stderr land in `log`.
struct TrainerRuns {
  TempDir tmp;
  fs::path shards = tmp / "shards";
  fs::path log = tmp / "log.txt";
  TrainerRuns() { test::WriteSyntheticShards(shards, {/*train=*/2, /*test=*/1}); }
  // In this process (test::RunInProcess): the runs are short, LibTorch's
  // start-up would be most of their time.
  int Trainer(const std::string& out, const std::string& extra) {
    return test::RunInProcess(RunTrainer, "trainer",
                              shards.string() + " --out " + (tmp / out).string() +
                                  " --threads 2 --workers 1 --lr 1e-5 --init he --eval-every 0 --epochs 2 " + extra,
                              log);
  }
  std::string Log() const { return ReadTextFile(log); }
  nlohmann::json Config(const std::string& out) const {
    return nlohmann::json::parse(ReadTextFile(tmp / out / "config.json"));
  }
};

// The largest difference between two runs' weights and SGD momentum.
double WeightDifference(const fs::path& a_checkpoint, const fs::path& b_checkpoint) {
  TrainOptions opts;
  CSRNet a, b;
  auto oa = MakeRunOptimizer(a, opts), ob = MakeRunOptimizer(b, opts);
  LoadCheckpoint(a_checkpoint.string(), a, *oa);
  LoadCheckpoint(b_checkpoint.string(), b, *ob);
  double diff = 0;
  for (const auto& item : a->named_parameters()) {
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
  }
  return diff;
}

TEST_CASE("--precision auto parses; an unknown word is one usage error listing auto") {
  CHECK(ParsePrecision("auto") == Precision::kAuto);
  CHECK(PrecisionName(Precision::kAuto) == "auto");
  CHECK_THROWS_WITH_AS(ParsePrecision("x"), "--precision: unknown precision 'x' (expected auto, fp32, bf16 or fp16)",
                       UsageError);
  TrainOptions opts;
  ArgParser parser("trainer", "", "");
  RegisterTrainOptions(parser, &opts);
  CHECK(parser.Defaults()["precision"] == "fp32");  // the default stays the original's
  const char* args[] = {"trainer", "--precision", "int8"};
  CHECK_THROWS_WITH_AS(parser.Parse(3, args), doctest::Contains("expected auto, fp32, bf16 or fp16"), UsageError);
  const char* good[] = {"trainer", "--precision", "auto"};
  REQUIRE(parser.Parse(3, good));
  CHECK(opts.precision == Precision::kAuto);
  CHECK(parser.ToJson()["precision"] == "auto");
  CHECK(Has(parser.Help(), "--precision auto|fp32|bf16|fp16"));
}

TEST_CASE("the decision is the faster of the two; a tie or a stopped bf16 keeps fp32") {
  ProbeTimes t;
  t.fp32 = 0.43;
  t.bf16 = 0.21;
  CHECK(FasterPrecision(t) == Precision::kBf16);
  CHECK_FALSE(Bf16Slower(t));
  CHECK(Has(DescribeProbe(t, ProbeMode::kTraining), "bf16 0.210 s vs fp32 0.430 s per training probe step, 2.05x"));
  t.bf16 = 0.61;
  CHECK(FasterPrecision(t) == Precision::kFp32);
  CHECK(Bf16Slower(t));
  CHECK(Has(DescribeProbe(t, ProbeMode::kInference), "0.70x"));
  t.bf16 = t.fp32;
  CHECK(FasterPrecision(t) == Precision::kFp32);
  CHECK_FALSE(Bf16Slower(t));
  t.bf16 = 0.01;  // a stopped step is no measurement of bf16's speed
  t.bf16_cut = true;
  t.cut = 3;
  CHECK(FasterPrecision(t) == Precision::kFp32);
  CHECK(Bf16Slower(t));
  CHECK(Has(DescribeProbe(t, ProbeMode::kTraining), "bf16 stopped after 0.010 s, over 3x fp32's 0.430 s"));
}

TEST_CASE("CSR_PRECISION_PROBE_FAKE: unset, the figures, or one usage error naming it") {
  {
    FakeProbe fake("");
    CHECK_FALSE(FakeProbeTimes().has_value());
  }
  {
    FakeProbe fake("fp32=1.5,bf16=0.25");
    const std::optional<ProbeTimes> t = FakeProbeTimes();
    REQUIRE(t.has_value());
    CHECK(t->fp32 == 1.5);
    CHECK(t->bf16 == 0.25);
    CHECK(t->fake);
    CHECK(Has(DescribeProbe(*t, ProbeMode::kTraining), "faked by CSR_PRECISION_PROBE_FAKE"));
  }
  for (const char* bad : {"fp32=1", "fp32=1,bf16=x", "fp32=1,bf16=-2", "fp32=1,bf16=2,int8=3", "junk"}) {
    FakeProbe fake(bad);
    CHECK_THROWS_WITH_AS(FakeProbeTimes(), doctest::Contains("CSR_PRECISION_PROBE_FAKE: expected fp32=SECONDS"),
                         UsageError);
  }
}

// A step that takes `seconds`, checking its deadline every millisecond as the
// probe checks it between layers.
ProbeStep Sleeper(double seconds) {
  return [seconds](ProbeClock::time_point deadline) {
    const auto end =
        ProbeClock::now() + std::chrono::duration_cast<ProbeClock::duration>(std::chrono::duration<double>(seconds));
    while (ProbeClock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (ProbeClock::now() > deadline) return false;
    }
    return true;
  };
}

// Counts the calls of a step.
ProbeStep Counted(ProbeStep step, int* calls) {
  return [step, calls](ProbeClock::time_point deadline) {
    ++*calls;
    return step(deadline);
  };
}

// Timing settings: `rounds` at most, `decisive` as given.
ProbeSettings Timing(int rounds, double decisive = 1.25) {
  ProbeSettings s;
  s.repetitions = rounds;
  s.decisive = decisive;
  return s;
}

TEST_CASE("the timing keeps each precision's fastest step and stops a far slower bf16 at its deadline") {
  int calls = 0;
  const ProbeTimes fast = TimeProbeSteps(Counted(Sleeper(0.02), &calls), Sleeper(0.004), Timing(3));
  CHECK_FALSE(fast.bf16_cut);
  CHECK(fast.fp32 >= 0.02);
  CHECK(fast.bf16 < fast.fp32);
  CHECK(FasterPrecision(fast) == Precision::kBf16);
  CHECK(calls == 2);  // the warm-up and one round: 5x is decisive
  calls = 0;
  TimeProbeSteps(Counted(Sleeper(0.02), &calls), Sleeper(0.004), Timing(3, 100.0));
  CHECK(calls == 4);  // never decisive: every round
  calls = 0;
  ProbeSettings quick = Timing(3, 100.0);
  quick.budget = 0.01;
  TimeProbeSteps(Counted(Sleeper(0.02), &calls), Sleeper(0.004), quick);
  CHECK(calls == 2);  // over budget after the first round
  // bf16 emulated in software: 50x slower. Stopped after about 3 fp32 steps,
  // not run for its second.
  const ProbeTimes slow = TimeProbeSteps(Sleeper(0.02), Sleeper(1.0), Timing(3));
  CHECK(slow.bf16_cut);
  CHECK(slow.bf16 < 0.5);
  CHECK(slow.seconds < 0.7);
  CHECK(FasterPrecision(slow) == Precision::kFp32);
  // No bf16 kernel at all (oneDNN limited to AVX2 refuses bf16 convolutions):
  // a failed bf16, not a failed probe.
  const ProbeStep throws = [](ProbeClock::time_point) -> bool {
    throw std::runtime_error("could not create a primitive descriptor iterator\nbacktrace");
  };
  const ProbeTimes failed = TimeProbeSteps(Sleeper(0.002), throws, Timing(3));
  CHECK(failed.bf16_error == "could not create a primitive descriptor iterator");
  CHECK_FALSE(failed.bf16_cut);
  CHECK(FasterPrecision(failed) == Precision::kFp32);
  CHECK(Bf16Slower(failed));
  CHECK(Has(DescribeProbe(failed, ProbeMode::kTraining), "bf16 failed: could not create a primitive descriptor"));
  CHECK_THROWS_AS(TimeProbeSteps(throws, Sleeper(0.001), Timing(1)), std::runtime_error);  // fp32's own failure
}

TEST_CASE("the probe leaves weights, gradients, torch's RNG and autocast exactly as they were") {
  CSRNet model;
  test::HeInit(model, 5);
  torch::Tensor marked = model->output_layer->bias;
  marked.mutable_grad() = torch::full_like(marked, 7.0);  // one gradient defined, the others not
  std::vector<torch::Tensor> before;
  for (const torch::Tensor& p : model->parameters()) before.push_back(p.detach().clone());
  const torch::Tensor grad_before = marked.grad();
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  const torch::Tensor rng_before = gen.get_state();
  ProbeSettings tiny;
  tiny.height = tiny.width = 32;
  tiny.repetitions = 1;
  for (const ProbeMode mode : {ProbeMode::kTraining, ProbeMode::kInference}) {
    const ProbeTimes t = ProbeModel(model, mode, tiny);
    CHECK(t.fp32 > 0);
    CHECK(t.bf16 > 0);
    const std::vector<torch::Tensor> after = model->parameters();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) CHECK(torch::equal(after[i], before[i]));
    for (const torch::Tensor& p : after) {
      if (!p.is_same(marked)) CHECK_FALSE(p.grad().defined());
    }
    CHECK(marked.grad().is_same(grad_before));
    CHECK(torch::equal(marked.grad(), torch::full_like(marked, 7.0)));
    CHECK(torch::equal(gen.get_state(), rng_before));
    CHECK_FALSE(compat::AutocastEnabled(c10::DeviceType::CPU));
  }
}

TEST_CASE("trainer --precision auto records what it chose; --resume keeps it, measures nothing, and is exact") {
  TrainerRuns r;
  {
    FakeProbe fake(kBf16Faster);
    REQUIRE_MESSAGE(r.Trainer("straight", "--precision auto") == 0, r.Log());
    REQUIRE_MESSAGE(r.Trainer("split", "--precision auto --max-steps 2") == 0, r.Log());
  }
  const std::string first = r.Log();
  INFO(first);
  CHECK(Has(first, "trainer: precision auto: bf16 (bf16 0.500 s vs fp32 1.000 s per training probe step, 2.00x"));
  CHECK(Has(first, "bf16 (chosen by --precision auto)"));
  CHECK(r.Config("split")["precision"] == "bf16");
  CHECK(ReadCheckpointConfig((r.tmp / "split/checkpoint.pt").string())["precision"] == "bf16");
  // The same command again: the fake now favours fp32, but nothing is measured.
  FakeProbe fake(kBf16Slower);
  REQUIRE(r.Trainer("split", "--precision auto --resume auto --max-steps 0") == 0);
  const std::string resumed = r.Log();
  INFO(resumed);
  CHECK(Has(resumed, "precision bf16 (recorded in"));
  CHECK_FALSE(Has(resumed, "precision auto:"));
  CHECK_FALSE(Has(resumed, "probe step"));
  CHECK(r.Config("split")["precision"] == "bf16");
  CHECK(WeightDifference(r.tmp / "straight/checkpoint.pt", r.tmp / "split/checkpoint.pt") == 0.0);
}

TEST_CASE("trainer: auto with the real probe trains bit for bit as the precision it chose, given explicitly") {
  TrainerRuns r;
  REQUIRE_MESSAGE(r.Trainer("auto", "--max-steps 2 --precision auto") == 0, r.Log());
  const std::string text = r.Log();
  INFO(text);
  const std::string chosen = r.Config("auto")["precision"];
  REQUIRE((chosen == "fp32" || chosen == "bf16"));
  CHECK(Has(text, "precision auto: " + chosen + " ("));
  CHECK(Has(text, "per training probe step"));
  // The same run given `chosen` outright, with the probe faked away (an
  // explicit bf16 would measure too): a run that never probed.
  FakeProbe fake(chosen == "bf16" ? kBf16Faster : kBf16Slower);
  REQUIRE(r.Trainer("explicit", "--max-steps 2 --precision " + chosen) == 0);
  CHECK(WeightDifference(r.tmp / "auto/checkpoint.pt", r.tmp / "explicit/checkpoint.pt") == 0.0);
}

TEST_CASE("trainer: an explicit bf16 that measures slower runs with one warning; explicit fp32 measures nothing") {
  TrainerRuns r;
  {
    FakeProbe fake(kBf16Slower);
    REQUIRE(r.Trainer("bf16", "--max-steps 1 --precision bf16") == 0);
  }
  std::string text = r.Log();
  INFO(text);
  CHECK(Has(text,
            "trainer: warning: --precision bf16 measures slower than fp32 on this CPU (bf16 2.000 s vs fp32 "
            "1.000 s per training probe step, 0.50x"));
  CHECK(r.Config("bf16")["precision"] == "bf16");
  // A malformed fake fails every run that measures, so a run that succeeds measured nothing.
  FakeProbe junk("junk");
  REQUIRE(r.Trainer("fp32", "--max-steps 1 --precision fp32") == 0);
  CHECK_FALSE(Has(r.Log(), "probe"));
  CHECK(r.Trainer("junk", "--max-steps 1 --precision auto") == 2);
  text = r.Log();
  CHECK(Has(text, "trainer: error: CSR_PRECISION_PROBE_FAKE: expected fp32=SECONDS"));
}

// A port nobody listens on now (the kernel's pick for an ephemeral bind).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST_CASE("trainer, two ranks with --precision auto: rank 0 measures, rank 1 takes its choice") {
  TrainerRuns r;
  const int port = FreePort();
  const std::string args = r.shards.string() + " --out " + (r.tmp / "dist").string() +
                           " --threads 1 --workers 1 --lr 1e-5 --eval-every 0 --max-steps 1 --precision auto";
  std::string script;
  for (const char* rank : {"0", "1"}) {
    // Rank 1's fake is malformed: had it measured, it would have failed.
    script +=
        StrCat("(RANK=", rank, " WORLD_SIZE=2 LOCAL_RANK=", rank, " MASTER_ADDR=127.0.0.1 MASTER_PORT=", port,
               " CSR_PRECISION_PROBE_FAKE=", rank[0] == '0' ? kBf16Faster : "junk", " ", test::Tool("trainer"), " ",
               args, " > ", (r.tmp / rank).string(), ".log 2>&1; echo $? > ", (r.tmp / rank).string(), ".rc) &\n");
  }
  std::ofstream(r.tmp / "ranks.sh") << script << "wait\n";
  test::Run("bash " + (r.tmp / "ranks.sh").string());
  const std::string log0 = ReadTextFile(r.tmp / "0.log"), log1 = ReadTextFile(r.tmp / "1.log");
  INFO(log0);
  INFO(log1);
  CHECK(ReadTextFile(r.tmp / "0.rc") == "0\n");
  CHECK(ReadTextFile(r.tmp / "1.rc") == "0\n");
  CHECK(Has(log0, "precision auto: bf16"));
  CHECK(Has(log1, "rank 1: precision bf16 (rank 0's choice"));
  CHECK(r.Config("dist")["precision"] == "bf16");
}

// Shared weights for the file (He-initialised, original layout).
const fs::path& Weights() { return test::SharedRandomWeights(2); }

TEST_CASE("predict and evaluate take --precision auto and report the precision they ran in") {
  TempDir dir;
  const fs::path image = dir / "a.png";
  test::WriteRgb(image, test::CrowdImage(96, 80, 3));
  test::WriteTestShards(dir / "shards", 1);
  const std::string w = "--threads 2 --weights " + Weights().string() + " ";
  FakeProbe fake(kBf16Faster);
  Outcome o = test::RunCapturedHere(dir, RunPredict, "predict", w + "--precision auto " + image.string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  CHECK(Has(o.err, "predict: precision auto: bf16 (bf16 0.500 s vs fp32 1.000 s per inference probe step"));
  CHECK(Has(o.err, "bf16 chosen by --precision auto"));
  const Outcome explicit_bf16 =
      test::RunCapturedHere(dir, RunPredict, "predict", w + "--precision bf16 " + image.string());
  CHECK(explicit_bf16.out == o.out);  // the same engine, the same count
  const fs::path json = dir / "e.json";
  o = test::RunCapturedHere(dir, RunEvaluate, "evaluate",
                            w + "--precision auto --json " + json.string() + " " + (dir / "shards").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  nlohmann::json summary = nlohmann::json::parse(ReadTextFile(json));
  CHECK(summary["precision"] == "bf16");
  CHECK(summary["precision_chosen_by"] == "auto");

  FakeProbe slower(kBf16Slower);
  o = test::RunCapturedHere(dir, RunEvaluate, "evaluate",
                            w + "--precision auto --json " + json.string() + " " + (dir / "shards").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  summary = nlohmann::json::parse(ReadTextFile(json));
  CHECK(summary["precision"] == "fp32");
  CHECK(summary["precision_chosen_by"] == "auto");
  o = test::RunCapturedHere(dir, RunPredict, "predict", w + "--precision bf16 " + image.string());
  REQUIRE(o.rc == 0);
  CHECK(Has(o.err, "predict: warning: --precision bf16 measures slower than fp32 on this CPU"));
  CHECK(Has(o.err, "0.50x"));
}

TEST_CASE("the onnx engine with --precision auto runs fp32 without measuring" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");
  TempDir dir;
  const fs::path onnx = dir / "m.onnx";
  REQUIRE(test::ExportOnnx(Weights(), onnx, dir / "export.log") == 0);
  const fs::path image = dir / "a.png";
  test::WriteRgb(image, test::CrowdImage(96, 80, 3));
  test::WriteTestShards(dir / "shards", 1);
  FakeProbe junk("junk");  // any measurement would fail
  for (const char* engine : {"", "--engine onnx "}) {
    const Outcome o = test::RunCapturedHere(
        dir, RunPredict, "predict",
        std::string(engine) + "--threads 2 --precision auto --weights " + onnx.string() + " " + image.string());
    REQUIRE_MESSAGE(o.rc == 0, o.err);
    CHECK(Has(o.err, "precision auto: fp32 (the onnx engine runs fp32 only"));
    CHECK(Has(o.err, "fp32 chosen by --precision auto"));
  }
  const fs::path json = dir / "e.json";
  const Outcome o = test::RunCapturedHere(dir, RunEvaluate, "evaluate",
                                          "--threads 2 --precision auto --weights " + onnx.string() + " --json " +
                                              json.string() + " " + (dir / "shards").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  CHECK(nlohmann::json::parse(ReadTextFile(json))["precision"] == "fp32");
}

}  // namespace
}  // namespace csr
