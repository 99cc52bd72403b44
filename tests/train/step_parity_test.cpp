// The training step against Python's: the same weights, patch and target
// through TrainStep (FusedSGD, or torch::optim::Adam) and through PyTorch's
// own loop (tools/csrnet_pytorch.py's CSRNet, MSELoss(reduction="sum"),
// torch.optim.SGD / Adam) end with the same weights after several steps.
// Runs against whichever Python test::Python() names, so a build against the
// torch wheel compares with the wheel's own Python torch.
#include "tests/train/train_test_util.h"

#include <fstream>

#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/trainer.h"

namespace csr {
namespace {

using test::TempDir;

constexpr int kSteps = 3;

// The patch and target, made by the same torch formulas on both sides (no RNG
// to keep in step): 1 x 3 x 64 x 80 and its 1 x 1 x 8 x 10 map.
torch::data::Example<> Batch() {
  const torch::Tensor x = torch::sin(torch::arange(3 * 64 * 80, torch::kFloat32) * 0.37).reshape({1, 3, 64, 80});
  const torch::Tensor y = (torch::cos(torch::arange(80, torch::kFloat32) * 0.11) + 1) * 0.05;
  return {x, y.reshape({1, 1, 8, 10})};
}

const char* kScript = R"(import sys
sys.path.insert(0, sys.argv[1])
import torch
from torch import nn
from csrnet_pytorch import CSRNet, load_h5, save_h5
torch.set_num_threads(2)
kind, weights, out, lr, steps = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
model = load_h5(CSRNet(), weights)
x = torch.sin(torch.arange(3 * 64 * 80, dtype=torch.float32) * 0.37).reshape(1, 3, 64, 80)
y = ((torch.cos(torch.arange(80, dtype=torch.float32) * 0.11) + 1) * 0.05).reshape(1, 1, 8, 10)
if kind == "sgd":
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.95, weight_decay=5e-4)
else:
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
loss_fn = nn.MSELoss(reduction="sum")
for _ in range(steps):
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
save_h5(model, out)
)";

TEST_CASE("the fp32 step equals PyTorch's: SGD (the original's settings) and Adam, 3 steps" *
          doctest::test_suite("optional")) {
  TempDir tmp;
  CSR_SKIP_UNLESS(test::Run(test::Python() + " -c 'import torch, h5py, numpy'", tmp / "probe.txt") == 0,
                  test::kNeedPython, "no Python with torch and h5py (scripts/deps.sh test, or CSR_TEST_PYTHON)");
  const fs::path script = tmp / "step.py";
  std::ofstream(script) << kScript;
  CSRNet start;
  test::HeInit(start, 11);
  const std::string weights = (tmp / "start.h5").string();
  SaveWeightsH5(start, weights);

  for (const auto& [kind, lr] : {std::pair{OptimizerKind::kSgd, 1e-4}, std::pair{OptimizerKind::kAdam, 1e-4}}) {
    const std::string name = OptimizerName(kind);
    const std::string theirs = (tmp / (name + "_python.h5")).string();
    REQUIRE(test::Run(StrCat(test::Python(), " ", script.string(), " " CSR_SOURCE_DIR "/tools ", name, " ", weights,
                             " ", theirs, " ", lr, " ", kSteps),
                      tmp / (name + ".log")) == 0);
    TrainOptions opts;
    opts.optimizer = kind;
    opts.lr = lr;
    CSRNet ours;
    LoadWeights(ours, weights);
    auto optimizer = MakeRunOptimizer(ours, opts);
    for (int i = 0; i < kSteps; ++i) TrainStep(ours, *optimizer, Batch(), Precision::kFp32, c10::Device(c10::kCPU));
    CSRNet python;
    LoadWeights(python, theirs);
    // Over all 16.3 M weights: the largest difference, the L2 norm of the
    // difference against that of the update, and how many weights differ by
    // more than a thousandth of the largest update.
    double diff = 0, moved = 0, diff2 = 0, moved2 = 0;
    for (const auto& item : ours->named_parameters()) {
      const torch::Tensor d = item.value() - python->named_parameters()[item.key()];
      const torch::Tensor m = item.value() - start->named_parameters()[item.key()];
      diff = std::max(diff, d.abs().max().item<double>());
      moved = std::max(moved, m.abs().max().item<double>());
      diff2 += d.square().sum().item<double>();
      moved2 += m.square().sum().item<double>();
    }
    int64_t off = 0, total = 0;
    for (const auto& item : ours->named_parameters()) {
      off += ((item.value() - python->named_parameters()[item.key()]).abs() > 1e-3 * moved).sum().item<int64_t>();
      total += item.value().numel();
    }
    const double relative = std::sqrt(diff2 / moved2);
    MESSAGE(name << " after " << kSteps << " steps: max |C++ - PyTorch| " << diff << " (largest update " << moved
                 << "), |difference| / |update| " << relative << ", " << off << " of " << total
                 << " weights off by more than 1e-3 of the largest update");
    CHECK(moved > 1e-5);  // the steps did something
    if (kind == OptimizerKind::kSgd) {
      CHECK(diff <= 1e-5 * moved);  // and the same thing, to float rounding
    } else {
      // Adam divides each gradient by its own running RMS, so a weight whose
      // gradient is at rounding-noise level takes a full +-lr step whose sign
      // is that noise's: those few weights differ (measured: 0.1 % of them,
      // relative L2 5.6e-4 on 1.13), the update as a whole does not.
      CHECK(relative <= 2e-3);
      CHECK(off <= total / 100);
    }
  }
}

}  // namespace
}  // namespace csr
