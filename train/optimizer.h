// The optimizer and its schedule: SGD with momentum and weight decay fused
// into one pass, and the step learning-rate schedule of --lr-steps.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include "train/model.h"
#include "train/train_options.h"

namespace csr {

// Whether two dense, non-overlapping tensors of the same sizes hold their
// elements in the same order in memory: their strides agree on every
// dimension longer than 1 (a size-1 dimension's stride is arbitrary, and
// LibTorch 2.x gives a gradient other strides there than its weight).
bool SameMemoryLayout(const at::Tensor& a, const at::Tensor& b);

// torch::optim::SGD (same options, state, and checkpoint format) whose step
// does weight decay, momentum and the update in one pass over each parameter
// instead of four: the step is memory-bound, so this saves most of its time.
// Falls back to torch's step for dampening, Nesterov or unusual layouts.
class FusedSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// Drops the gradients (instead of zero-filling them) so backward writes
// fresh ones: saves a pass over every parameter per step.
void ClearGradients(torch::optim::Optimizer& optimizer);

// SGD with the options' rate, momentum and weight decay over the model.
FusedSGD MakeOptimizer(CSRNet& model, const TrainOptions& opts);
// The optimizer the options name (--optimizer): MakeOptimizer's SGD, or
// torch::optim::Adam with the options' rate and weight decay (L2, added to
// the gradient as torch.optim.Adam does) and torch's default betas and eps.
std::unique_ptr<torch::optim::Optimizer> MakeRunOptimizer(CSRNet& model, const TrainOptions& opts);
// Which kind `optimizer` is (for checkpoints: state of one kind does not fit the other).
OptimizerKind KindOf(const torch::optim::Optimizer& optimizer);
// "sgd" or "adam": the spelling of --optimizer.
const char* OptimizerName(OptimizerKind kind);
// The learning rate of a 0-based epoch under lr, lr_steps and lr_gamma.
double LearningRate(const TrainOptions& opts, int64_t epoch);
// Sets every parameter group's rate.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace csr
