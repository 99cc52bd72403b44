// The CUDA paths on a GPU: inference against the CPU's, pinned batches,
// training steps in fp32 / bf16 / fp16 (with the gradient scaler), an exact
// checkpoint resume, and the trainer tool end to end. Every case needs a
// CUDA LibTorch (scripts/build.sh --libtorch pip) and a visible GPU; without
// them each reports a skip (ctest: "Skipped"), never a pass. Label `gpu`;
// scripts/gpu_check.sh runs them with CSR_REQUIRE=gpu.
#include "tests/train/train_test_util.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include "common/base/fs.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/dataset.h"
#include "train/inference.h"
#include "train/trainer.h"

namespace csr {
namespace {

using test::TempDir;

#define CSR_NEED_GPU() \
  CSR_SKIP_UNLESS(torch::cuda::is_available(), test::kNeedGpu, "no CUDA GPU visible to this LibTorch")

// cuDNN's fp32 convolutions in true fp32 and with fixed algorithms while
// alive: comparisons against the CPU and between runs are then tight.
class StrictCudnn {
 public:
  StrictCudnn()
      : tf32_(at::globalContext().allowTF32CuDNN()),
        deterministic_(at::globalContext().deterministicCuDNN()),
        benchmark_(at::globalContext().benchmarkCuDNN()) {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setDeterministicCuDNN(true);
    at::globalContext().setBenchmarkCuDNN(false);
  }
  ~StrictCudnn() {
    at::globalContext().setAllowTF32CuDNN(tf32_);
    at::globalContext().setDeterministicCuDNN(deterministic_);
    at::globalContext().setBenchmarkCuDNN(benchmark_);
  }
  StrictCudnn(const StrictCudnn&) = delete;
  StrictCudnn& operator=(const StrictCudnn&) = delete;

 private:
  bool tf32_, deterministic_, benchmark_;
};

double RelL2(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

torch::data::Example<> Batch(uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({2, 3, 64, 80}), torch::rand({2, 1, 8, 10})};
}

TEST_CASE("on the GPU, inference equals the CPU's in fp32 and comes close in bf16 and fp16, tiled or not") {
  CSR_NEED_GPU();
  StrictCudnn strict;
  CSRNet model;
  test::HeInit(model, 11);
  torch::manual_seed(12);
  const torch::Tensor image = torch::randn({1, 3, 200, 264});
  InferenceOptions cpu;
  const torch::Tensor want = PredictDensity(model, image, cpu);
  const c10::Device gpu(c10::kCUDA, 0);
  for (const Precision precision : {Precision::kFp32, Precision::kBf16, Precision::kFp16}) {
    PrepareModel(model, gpu, precision);
    InferenceOptions o;
    o.device = gpu;
    o.precision = precision;
    const torch::Tensor whole = PredictDensity(model, image, o);
    o.tile = 96;  // several tiles, stitched
    const torch::Tensor tiled = PredictDensity(model, image, o);
    INFO(PrecisionName(precision));
    REQUIRE(whole.device().is_cpu());
    CHECK(RelL2(whole, want) < (precision == Precision::kFp32 ? 1e-5 : 5e-2));
    CHECK(RelL2(tiled, whole) < (precision == Precision::kFp32 ? 1e-5 : 5e-2));
    PrepareModel(model, c10::Device(c10::kCPU), Precision::kFp32);
  }
}

TEST_CASE("the loader's batches are pinned for a GPU; training steps run in fp32, bf16 and fp16") {
  CSR_NEED_GPU();
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/2, /*test=*/1});
  auto shards = std::make_shared<const ShardSet>(tmp / "shards");
  ShardDataset train(shards, "train", /*mirror=*/true);
  train.set_pin_memory(true);
  const torch::data::Example<> batch = train.get_batch({0, 1});
  CHECK(batch.data.is_pinned());
  CHECK(batch.target.is_pinned());

  const c10::Device gpu(c10::kCUDA, 0);
  for (const Precision precision : {Precision::kFp32, Precision::kBf16, Precision::kFp16}) {
    INFO(PrecisionName(precision));
    CSRNet model;
    test::HeInit(model, 4);
    PrepareModelForTraining(model, gpu, precision);
    TrainOptions opts;
    opts.lr = 1e-6;
    FusedSGD opt = MakeOptimizer(model, opts);
    GradScaler scaler;
    GradScaler* use = precision == Precision::kFp16 ? &scaler : nullptr;
    int stepped = 0;
    double first = 0, last = 0;
    for (int i = 0; i < 12; ++i) {
      const StepOutcome s = TrainStepOn(model, opt, batch, precision, gpu, nullptr, false, use);
      REQUIRE(s.finite);
      if (i == 0) first = s.loss;
      last = s.loss;
      stepped += s.skipped ? 0 : 1;
    }
    CHECK(stepped >= 1);  // fp16 may skip its first steps while the scale backs off
    CHECK(last < first);
    for (const auto& p : model->parameters()) CHECK(torch::isfinite(p).all().item<bool>());
    if (use) CHECK(scaler.scale() <= 65536.0);
  }
}

TEST_CASE("a CUDA checkpoint resumes exactly, the GPU's RNG state with it") {
  CSR_NEED_GPU();
  StrictCudnn strict;
  TempDir tmp;
  const c10::Device gpu(c10::kCUDA, 0);
  TrainOptions opts;
  opts.lr = 1e-6;
  CSRNet a;
  test::HeInit(a, 5);
  PrepareModelForTraining(a, gpu, Precision::kFp32);
  FusedSGD opt_a = MakeOptimizer(a, opts);
  for (uint64_t i = 0; i < 2; ++i) TrainStep(a, opt_a, Batch(i), Precision::kFp32, gpu);
  const std::string path = (tmp / "checkpoint.pt").string();
  torch::cuda::manual_seed_all(99);
  SaveCheckpoint(path, a, opt_a, TrainState{}, nlohmann::json::object());
  const torch::Tensor draw_a = torch::rand({4}, torch::TensorOptions().device(gpu));
  for (uint64_t i = 2; i < 4; ++i) TrainStep(a, opt_a, Batch(i), Precision::kFp32, gpu);

  CSRNet b;
  PrepareModelForTraining(b, gpu, Precision::kFp32);
  FusedSGD opt_b = MakeOptimizer(b, opts);
  torch::cuda::manual_seed_all(1);  // overwritten by the checkpoint's state
  LoadCheckpoint(path, b, opt_b);
  const torch::Tensor draw_b = torch::rand({4}, torch::TensorOptions().device(gpu));
  CHECK(torch::equal(draw_a, draw_b));
  for (uint64_t i = 2; i < 4; ++i) TrainStep(b, opt_b, Batch(i), Precision::kFp32, gpu);
  double diff = 0;
  for (const auto& item : a->named_parameters()) {
    REQUIRE(b->named_parameters()[item.key()].device().is_cuda());
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
  }
  CHECK(diff == 0);
}

TEST_CASE("the trainer on the GPU in fp16: a resumed run equals the straight one, the loss scale included") {
  CSR_NEED_GPU();
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/4, /*test=*/1});
  const std::string args = (tmp / "shards").string() +
                           " --device cuda --precision fp16 --init he --optimizer adam --lr 1e-4 --epochs 2 --out ";
  const fs::path log = tmp / "log.txt";
  const std::string trainer = test::Tool("trainer") + " ";
  REQUIRE(test::Run(trainer + args + (tmp / "straight").string(), log) == 0);
  REQUIRE(test::Run(trainer + args + (tmp / "split").string() + " --max-steps 5", log) == 0);
  // --max-steps 0: no limit (the checkpoint's config holds the split run's 5).
  REQUIRE(test::Run(trainer + "--resume " + (tmp / "split/checkpoint.pt").string() + " --max-steps 0", log) == 0);
  TrainOptions opts;
  opts.optimizer = OptimizerKind::kAdam;
  CSRNet a, b;
  auto oa = MakeRunOptimizer(a, opts), ob = MakeRunOptimizer(b, opts);
  const TrainState sa = LoadCheckpoint((tmp / "straight/checkpoint.pt").string(), a, *oa);
  const TrainState sb = LoadCheckpoint((tmp / "split/checkpoint.pt").string(), b, *ob);
  CHECK(sa.step == 16);
  CHECK(sb.step == sa.step);
  CHECK(sa.loss_scale > 0);
  CHECK(sb.loss_scale == sa.loss_scale);
  CHECK(sb.loss_scale_growth == sa.loss_scale_growth);
  // cuDNN picks its algorithms per run (benchmark mode): equal up to rounding.
  double diff = 0, scale = 0;
  for (const auto& item : a->named_parameters()) {
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
    scale = std::max(scale, item.value().abs().max().item<double>());
  }
  CHECK(diff <= 1e-3 * scale);
}

}  // namespace
}  // namespace csr
