// fp16's gradient scaler (train/grad_scaler.h): its rules, its place in the
// training step, and its state in the checkpoint. All on the CPU in fp32,
// where a power-of-two scale must leave the step unchanged; the fp16 runs
// themselves need a GPU (cuda_gpu_test.cpp).
#include "tests/train/train_test_util.h"

#include <limits>

#include "common/base/error.h"
#include "tests/test_util.h"
#include "train/inference.h"
#include "train/trainer.h"

namespace csr {
namespace {

using test::TempDir;

torch::data::Example<> Batch(uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({2, 3, 32, 40}), torch::rand({2, 1, 4, 5})};
}

double MaxDiff(CSRNet& a, CSRNet& b) {
  double diff = 0;
  for (const auto& item : a->named_parameters()) {
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
  }
  return diff;
}

TEST_CASE("the scale backs off after an overflow and grows after growth_interval clean steps") {
  GradScaler::Options o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  GradScaler s(o);
  CHECK(s.scale() == 1024);
  s.Update(true);
  s.Update(true);
  CHECK(s.scale() == 1024);
  CHECK(s.growth_tracker() == 2);
  s.Update(false);  // an overflow resets the count
  CHECK(s.scale() == 512);
  CHECK(s.growth_tracker() == 0);
  for (int i = 0; i < 3; ++i) s.Update(true);
  CHECK(s.scale() == 1024);
  CHECK(s.growth_tracker() == 0);
  // Growth stops short of fp32's overflow.
  GradScaler::Options big;
  big.init_scale = 2e38;
  big.growth_interval = 1;
  GradScaler top(big);
  top.Update(true);
  CHECK(top.scale() == 2e38);

  CHECK_THROWS_AS(s.Restore(0, 0, "ckpt.pt"), Error);
  CHECK_THROWS_AS(s.Restore(std::numeric_limits<double>::infinity(), 0, "ckpt.pt"), Error);
  CHECK_THROWS_AS(s.Restore(8, 3, "ckpt.pt"), Error);  // beyond growth_interval
  CHECK_THROWS_AS(s.Restore(8, -1, "ckpt.pt"), Error);
  s.Restore(8, 2, "ckpt.pt");
  CHECK(s.scale() == 8);
  CHECK(s.growth_tracker() == 2);
}

TEST_CASE("Unscale divides every gradient and reports an inf or NaN in any of them") {
  torch::Tensor a = torch::ones({3}, torch::requires_grad()), b = torch::ones({2}, torch::requires_grad());
  a.mutable_grad() = torch::full({3}, 8.0);
  b.mutable_grad() = torch::full({2}, 4.0);
  const torch::Tensor no_grad = torch::ones({1}, torch::requires_grad());  // skipped: no gradient
  GradScaler::Options o;
  o.init_scale = 4;
  GradScaler s(o);
  CHECK(s.Unscale({a, b, no_grad}));
  CHECK(torch::equal(a.grad(), torch::full({3}, 2.0)));
  CHECK(torch::equal(b.grad(), torch::full({2}, 1.0)));
  b.mutable_grad()[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(s.Unscale({a, b}));
  a.mutable_grad()[0] = std::numeric_limits<float>::infinity();
  b.mutable_grad() = torch::ones({2});
  CHECK_FALSE(s.Unscale({a, b}));
  CHECK(s.Unscale({}));
}

TEST_CASE("a scaled fp32 step equals the unscaled one; an overflowing step is skipped and the scale halves") {
  CSRNet plain, scaled;
  test::HeInit(plain, 3);
  test::HeInit(scaled, 3);
  TrainOptions opts;
  opts.lr = 1e-6;
  FusedSGD opt_plain = MakeOptimizer(plain, opts), opt_scaled = MakeOptimizer(scaled, opts);
  GradScaler scaler;  // 2^16
  const c10::Device cpu(c10::kCPU);
  for (uint64_t i = 0; i < 3; ++i) {
    const StepOutcome a = TrainStepOn(plain, opt_plain, Batch(i), Precision::kFp32, cpu, nullptr, false);
    const StepOutcome b = TrainStepOn(scaled, opt_scaled, Batch(i), Precision::kFp32, cpu, nullptr, false, &scaler);
    CHECK(a.loss == b.loss);  // the reported loss is the unscaled one
    CHECK_FALSE(b.skipped);
  }
  // Scaling by a power of two is exact: the same weights up to the last bit
  // (oneDNN may sum in another order for other magnitudes: allow rounding).
  const double moved = (plain->output_layer->weight -
                        [&] {
                          CSRNet fresh;
                          test::HeInit(fresh, 3);
                          return fresh->output_layer->weight;
                        }())
                           .abs()
                           .max()
                           .item<double>();
  CHECK(moved > 0);
  CHECK(MaxDiff(plain, scaled) <= 1e-6 * moved);
  CHECK(scaler.growth_tracker() == 3);

  // A scale so large the scaled gradients overflow fp32: no step, scale halved.
  GradScaler::Options huge;
  huge.init_scale = 3e38;
  GradScaler overflow(huge);
  const torch::Tensor before = scaled->output_layer->weight.clone();
  const StepOutcome c = TrainStepOn(scaled, opt_scaled, Batch(7), Precision::kFp32, cpu, nullptr, false, &overflow);
  CHECK(c.finite);  // the loss itself was fine
  CHECK(c.skipped);
  CHECK(torch::equal(before, scaled->output_layer->weight));
  CHECK(overflow.scale() == 1.5e38);
}

TEST_CASE("the scaler's state goes through the checkpoint; a corrupt scale is refused naming the file") {
  TempDir tmp;
  CSRNet model;
  TrainOptions opts;
  FusedSGD opt = MakeOptimizer(model, opts);
  TrainState state;
  state.loss_scale = 32768;
  state.loss_scale_growth = 17;
  const std::string path = (tmp / "checkpoint.pt").string();
  SaveCheckpoint(path, model, opt, state, nlohmann::json::object());
  CSRNet back;
  FusedSGD opt_back = MakeOptimizer(back, opts);
  const TrainState read = LoadCheckpoint(path, back, opt_back);
  CHECK(read.loss_scale == 32768);
  CHECK(read.loss_scale_growth == 17);
  // Without a scaler (fp32, bf16) nothing is written and nothing read.
  SaveCheckpoint(path, model, opt, TrainState{}, nlohmann::json::object());
  CHECK(LoadCheckpoint(path, back, opt_back).loss_scale == 0);
  state.loss_scale = -1;
  const std::string bad = (tmp / "bad.pt").string();
  SaveCheckpoint(bad, model, opt, state, nlohmann::json::object());
  CHECK_THROWS_WITH_AS(LoadCheckpoint(bad, back, opt_back), doctest::Contains("loss_scale"), Error);
}

TEST_CASE("fp16 is CUDA's: on the CPU it is refused before anything runs") {
  CHECK(ParsePrecision("fp16") == Precision::kFp16);
  CHECK(PrecisionName(Precision::kFp16) == "fp16");
  CHECK_THROWS_WITH_AS(CheckPrecision(Precision::kFp16, c10::Device(c10::kCPU)), doctest::Contains("bf16"), UsageError);
  CheckPrecision(Precision::kBf16, c10::Device(c10::kCPU));
  CheckPrecision(Precision::kFp16, c10::Device(c10::kCUDA, 0));  // checked, not run: no GPU needed
}

}  // namespace
}  // namespace csr
