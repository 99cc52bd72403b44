// Checkpoints: what they hold, exact restore, and atomicity under kill -9.
#include "tests/train/train_test_util.h"

#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <thread>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"
#include "train/torch_compat.h"
#include "train/trainer.h"

namespace csr {
namespace {

using test::TempDir;

// A few SGD steps so the optimizer holds momentum buffers.
void TakeSteps(CSRNet& model, torch::optim::Optimizer& opt, int steps) {
  torch::manual_seed(5);
  for (int i = 0; i < steps; ++i) {
    torch::data::Example<> batch{torch::randn({1, 3, 32, 40}), torch::rand({1, 1, 4, 5})};
    TrainStep(model, opt, batch, Precision::kFp32, c10::Device(c10::kCPU));
  }
}

// A model and its optimizer as the trainer builds them (--lr `lr`, the
// other options at their defaults); Save writes a checkpoint of both.
struct ModelAndOptimizer {
  explicit ModelAndOptimizer(Backend backend = Backend::kB, double lr = TrainOptions{}.lr)
      : model(backend), opt(MakeOptimizer(model, WithLr(lr))) {}
  static TrainOptions WithLr(double lr) {
    TrainOptions o;
    o.lr = lr;
    return o;
  }
  // Writes tmp/name; returns its path.
  std::string Save(const TempDir& tmp, const std::string& name, const TrainState& state = TrainState{},
                   const nlohmann::json& config = nlohmann::json::object()) {
    const std::string path = (tmp / name).string();
    SaveCheckpoint(path, model, opt, state, config);
    return path;
  }
  CSRNet model;
  FusedSGD opt;
};

TEST_CASE("a checkpoint restores weights, momentum, state, RNG and config exactly") {
  TempDir tmp;
  ModelAndOptimizer ma(Backend::kB, 1e-4);
  CSRNet& a = ma.model;
  FusedSGD& opt_a = ma.opt;
  test::HeInit(a, 1);
  TakeSteps(a, opt_a, 2);
  TrainState s;
  s.epoch = 3;
  s.batch = 7;
  s.step = 55;
  s.best_mae = 12.25;
  s.best_epoch = 2;
  s.loss_sum = 99.5;
  s.patches = 14;
  s.seconds = 1.5;
  s.wait_seconds = 0.25;
  torch::manual_seed(77);
  torch::rand({3});  // move the generator somewhere
  const nlohmann::json config = {{"epochs", 9}, {"lr", 1e-4}};
  const std::string path = ma.Save(tmp, "checkpoint.pt", s, config);
  const torch::Tensor next_random = torch::rand({4});

  torch::manual_seed(1234);
  ModelAndOptimizer mb(Backend::kB, 1e-4);
  CSRNet& b = mb.model;
  FusedSGD& opt_b = mb.opt;
  const TrainState r = LoadCheckpoint(path, b, opt_b);
  CHECK(r.epoch == 3);
  CHECK(r.batch == 7);
  CHECK(r.step == 55);
  CHECK(r.best_mae == 12.25);
  CHECK(r.best_epoch == 2);
  CHECK(r.loss_sum == 99.5);
  CHECK(r.patches == 14);
  CHECK(r.wait_seconds == 0.25);
  CHECK(torch::equal(torch::rand({4}), next_random));  // RNG state restored
  CHECK(ReadCheckpointConfig(path) == config);
  for (const auto& item : a->named_parameters()) CHECK(torch::equal(item.value(), b->named_parameters()[item.key()]));
  // A checkpoint is also a weights file for predict/evaluate.
  CSRNet c = LoadModel(path);
  for (const auto& item : a->named_parameters()) CHECK(torch::equal(item.value(), c->named_parameters()[item.key()]));
  // Identical momentum: one more identical step keeps the weights identical.
  TakeSteps(a, opt_a, 1);
  TakeSteps(b, opt_b, 1);
  for (const auto& item : a->named_parameters()) CHECK(torch::equal(item.value(), b->named_parameters()[item.key()]));
}

TEST_CASE("a corrupt, truncated or foreign checkpoint is refused naming the file") {
  TempDir tmp;
  ModelAndOptimizer m;
  const std::string good = m.Save(tmp, "good.pt");
  const std::string cut = (tmp / "cut.pt").string();
  fs::copy_file(good, cut);
  fs::resize_file(cut, fs::file_size(good) - 1000);
  const std::string model_file = (tmp / "model.pt").string();
  SaveModelPt(m.model, model_file, {});
  const std::string text = (tmp / "text.pt").string();
  std::ofstream(text) << "{}";
  for (const std::string& path : {cut, model_file, text, (tmp / "absent.pt").string()}) {
    std::string msg;
    try {
      LoadCheckpoint(path, m.model, m.opt);
    } catch (const Error& e) {
      msg = e.what();
    }
    INFO(msg);
    CHECK(msg.find(path) != std::string::npos);
  }
  ModelAndOptimizer other(Backend::kD);
  CHECK_THROWS_AS(LoadCheckpoint(good, other.model, other.opt), Error);
}

// A hand-made archive: the checkpoint marker, a configuration, and
// optionally a format version.
std::string WriteMiniCheckpoint(const TempDir& tmp, const std::string& name, std::optional<int64_t> version) {
  torch::serialize::OutputArchive a;
  a.write("kind", c10::IValue(std::string("checkpoint")));
  a.write("config", c10::IValue(std::string("{\"epochs\": 3}")));
  if (version) a.write("format_version", c10::IValue(*version));
  const std::string path = (tmp / name).string();
  a.save_to(path);
  return path;
}

TEST_CASE("a checkpoint carries its format version; a newer one is refused, one without reads as version 1") {
  TempDir tmp;
  ModelAndOptimizer m;
  const std::string good = m.Save(tmp, "good.pt");
  torch::serialize::InputArchive in;
  in.load_from(good);
  c10::IValue v;
  REQUIRE(in.try_read("format_version", v));
  CHECK(v.toInt() == kCheckpointFormatVersion);

  const std::string older = WriteMiniCheckpoint(tmp, "older.pt", std::nullopt);
  CHECK(ReadCheckpointConfig(older) == nlohmann::json{{"epochs", 3}});
  const std::string newer = WriteMiniCheckpoint(tmp, "newer.pt", kCheckpointFormatVersion + 1);
  test::ExpectError([&] { ReadCheckpointConfig(newer); }, {newer, "checkpoint format version 2", "newer csrnet-cpp"});
  test::ExpectError([&] { LoadCheckpoint(newer, m.model, m.opt); }, {newer, "format version 2"});
  const std::string zero = WriteMiniCheckpoint(tmp, "zero.pt", 0);
  test::ExpectError([&] { ReadCheckpointConfig(zero); }, {zero, "checkpoint format version 0"});
}

TEST_CASE("a checkpoint with flipped bytes or a NaN momentum buffer is refused naming the file") {
  TempDir tmp;
  ModelAndOptimizer m(Backend::kB, 1e-4);
  test::HeInit(m.model, 2);
  TakeSteps(m.model, m.opt, 1);
  const std::string path = m.Save(tmp, "checkpoint.pt");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
    f.write(std::string(256, '\x5a').data(), 256);
  }
  ModelAndOptimizer other(Backend::kB, 1e-4);
  test::ExpectError([&] { LoadCheckpoint(path, other.model, other.opt); }, {path, "checksum mismatch in "});
  test::ExpectError([&] { ReadCheckpointConfig(path); }, {path, "checksum mismatch"});
  test::ExpectError([&] { LoadModel(path); }, {path, "checksum mismatch"});

  // A well-formed file whose momentum is NaN (a diverged run saved by hand, a buggy writer).
  const auto& p3 = m.opt.param_groups()[0].params()[3];
  static_cast<torch::optim::SGDParamState&>(*m.opt.state().at(compat::StateKey(p3))).momentum_buffer().view(-1)[7] =
      std::nan("");
  m.Save(tmp, "checkpoint.pt");
  test::ExpectError([&] { LoadCheckpoint(path, other.model, other.opt); },
                    {path, "momentum buffer of 'frontend.2.bias' holds NaN or infinite values"});
}

TEST_CASE("--optimizer adam: its moments and step counts restore exactly; SGD state and Adam state do not mix") {
  TempDir tmp;
  TrainOptions opts;
  opts.optimizer = OptimizerKind::kAdam;
  opts.lr = 1e-4;
  CSRNet a;
  test::HeInit(a, 3);
  auto opt_a = MakeRunOptimizer(a, opts);
  REQUIRE(KindOf(*opt_a) == OptimizerKind::kAdam);
  TakeSteps(a, *opt_a, 2);
  const std::string path = (tmp / "adam.pt").string();
  SaveCheckpoint(path, a, *opt_a, TrainState{}, nlohmann::json::object());

  CSRNet b;
  auto opt_b = MakeRunOptimizer(b, opts);
  LoadCheckpoint(path, b, *opt_b);
  const auto& p0 = opt_b->param_groups()[0].params()[0];
  CHECK(static_cast<torch::optim::AdamParamState&>(*opt_b->state().at(compat::StateKey(p0))).step() == 2);
  TakeSteps(a, *opt_a, 1);
  TakeSteps(b, *opt_b, 1);
  for (const auto& item : a->named_parameters()) CHECK(torch::equal(item.value(), b->named_parameters()[item.key()]));

  ModelAndOptimizer sgd;
  test::ExpectError([&] { LoadCheckpoint(path, sgd.model, sgd.opt); }, {path, "optimizer 'adam'", "--optimizer sgd"});
  const std::string sgd_path = sgd.Save(tmp, "sgd.pt");
  test::ExpectError([&] { LoadCheckpoint(sgd_path, b, *opt_b); }, {sgd_path, "optimizer 'sgd'", "--optimizer adam"});

  // A NaN second moment is refused like a NaN momentum buffer.
  const auto& p5 = opt_a->param_groups()[0].params()[5];
  static_cast<torch::optim::AdamParamState&>(*opt_a->state().at(compat::StateKey(p5))).exp_avg_sq().view(-1)[2] =
      std::nan("");
  SaveCheckpoint(path, a, *opt_a, TrainState{}, nlohmann::json::object());
  test::ExpectError([&] { LoadCheckpoint(path, b, *opt_b); },
                    {path, "Adam second moment of 'frontend.5.bias' holds NaN or infinite values"});
}

TEST_CASE("killing a checkpoint write at any moment leaves the previous checkpoint loadable") {
  TempDir tmp;
  const std::string path = (tmp / "checkpoint.pt").string();
  ModelAndOptimizer m;
  CSRNet& model = m.model;
  FusedSGD& opt = m.opt;
  auto fill = [&](double v) {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.fill_(v);
  };
  fill(0);
  TrainState state;
  SaveCheckpoint(path, model, opt, state, nlohmann::json::object());
  int64_t last_seen = 0;
  for (int round = 0; round < 6; ++round) {
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // The child rewrites the checkpoint over and over: weights all equal to
      // the epoch number, so a mixed file would be detected.
      at::set_num_threads(1);
      for (int64_t i = last_seen + 1;; ++i) {
        fill(static_cast<double>(i));
        state.epoch = i;
        SaveCheckpoint(path, model, opt, state, nlohmann::json::object());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + 170 * round));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    ModelAndOptimizer loaded_m;
    CSRNet& loaded = loaded_m.model;
    const TrainState s = LoadCheckpoint(path, loaded, loaded_m.opt);
    CHECK(s.epoch >= last_seen);
    for (const auto& p : loaded->parameters()) {
      CHECK(p.min().item<double>() == static_cast<double>(s.epoch));
      CHECK(p.max().item<double>() == static_cast<double>(s.epoch));
    }
    last_seen = s.epoch;
  }
  MESSAGE("checkpoints completed before the kills: " << last_seen);
  // Only the checkpoint and possibly killed temporaries are left; the trainer
  // removes the latter when it starts.
  for (const auto& entry : fs::directory_iterator(tmp.path())) {
    CHECK((entry.path().filename() == "checkpoint.pt" || IsAtomicTemp(entry.path())));
  }
}

TEST_CASE("the fused SGD step equals torch::optim::SGD's, channels-last weights included") {
  for (bool channels_last : {false, true}) {
    // A small conv net: the optimizer does not care which module it updates.
    auto make = [&] {
      torch::manual_seed(3);
      torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)), torch::nn::ReLU(),
                                torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 1, 1)));
      if (channels_last) {
        for (auto& p : net->parameters()) {
          if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
        }
      }
      return net;
    };
    torch::nn::Sequential a = make(), b = make();
    const auto options = torch::optim::SGDOptions(1e-3).momentum(0.95).weight_decay(5e-4);
    FusedSGD fused(a->parameters(), options);
    torch::optim::SGD reference(b->parameters(), options);
    torch::manual_seed(5);
    const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    for (int step = 0; step < 3; ++step) {
      const torch::Tensor x = torch::randn({2, 3, 12, 10}).contiguous(format), y = torch::rand({2, 1, 12, 10});
      for (auto [net, opt] : {std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&a, &fused},
                              std::pair<torch::nn::Sequential*, torch::optim::Optimizer*>{&b, &reference}}) {
        opt->zero_grad();
        ((*net)->forward(x) - y).pow(2).sum().backward();
        opt->step();
      }
    }
    // The fused loop applies when gradient, momentum and weight share strides.
    for (const auto& p : a->parameters()) CHECK(SameMemoryLayout(p.grad(), p));
    CHECK_FALSE(SameMemoryLayout(torch::zeros({2, 3}), torch::zeros({3, 2}).t()));
    CHECK(SameMemoryLayout(torch::zeros({1, 16, 1, 1}), torch::empty_strided({1, 16, 1, 1}, {16, 1, 16, 16})));
    double diff = 0, scale = 0;
    for (const auto& item : a->named_parameters()) {
      const torch::Tensor other = b->named_parameters()[item.key()];
      diff = std::max(diff, (item.value() - other).abs().max().item<double>());
      scale = std::max(scale, other.abs().max().item<double>());
    }
    MESSAGE("channels-last " << channels_last << ": max |fused - torch| = " << diff << " (weights up to " << scale
                             << ")");
    CHECK(diff <= 1e-6 * scale);
    torch::nn::Sequential initial = make();
    CHECK(!torch::allclose(initial->parameters()[0], a->parameters()[0]));  // the weights did move
    CHECK(fused.state().size() == reference.state().size());
  }
}

TEST_CASE("the learning rate follows --lr-steps and --lr-gamma") {
  TrainOptions o;
  o.lr = 1.0;
  o.lr_steps = {3, 5};
  o.lr_gamma = 0.5;
  CHECK(LearningRate(o, 0) == 1.0);
  CHECK(LearningRate(o, 1) == 1.0);
  CHECK(LearningRate(o, 2) == 0.5);   // epoch 3 (1-based)
  CHECK(LearningRate(o, 4) == 0.25);  // epoch 5
  CHECK(LearningRate(o, 100) == 0.25);
}

TEST_CASE("a training step lowers the loss on a fixed batch and skips non-finite losses") {
  CSRNet model;
  test::HeInit(model, 2);
  TrainOptions opts;
  opts.lr = 1e-6;
  FusedSGD opt = MakeOptimizer(model, opts);
  torch::manual_seed(9);
  torch::data::Example<> batch{torch::randn({2, 3, 32, 32}), torch::rand({2, 1, 4, 4})};
  const c10::Device cpu(c10::kCPU);
  const double first = TrainStep(model, opt, batch, Precision::kFp32, cpu);
  double last = first;
  for (int i = 0; i < 4; ++i) last = TrainStep(model, opt, batch, Precision::kFp32, cpu);
  CHECK(last < first);
  const double bf16 = TrainStep(model, opt, batch, Precision::kBf16, cpu);
  CHECK(std::isfinite(bf16));
  const torch::Tensor before = model->output_layer->bias.clone();
  torch::data::Example<> bad{batch.data, batch.target * std::numeric_limits<float>::infinity()};
  CHECK_FALSE(std::isfinite(TrainStep(model, opt, bad, Precision::kFp32, cpu)));
  CHECK(torch::equal(before, model->output_layer->bias));
}

}  // namespace
}  // namespace csr
