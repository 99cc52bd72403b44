#include "train/optimizer.h"
#include "train/torch_compat.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>

namespace csr {

namespace {

// One parameter's share of a fused SGD step.
struct SgdSlice {
  float* w;
  const float* g;
  float* v;  // momentum buffer, or null without momentum
  int64_t n;
  bool first;  // the buffer is new: it starts as the step itself (torch's rule)
  float lr, wd, momentum;
};

void UpdateSlice(const SgdSlice& s, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float d = s.g[i] + s.wd * s.w[i];
    float step = d;
    if (s.v) {
      step = s.first ? d : s.momentum * s.v[i] + d;
      s.v[i] = step;
    }
    s.w[i] -= s.lr * step;
  }
}

// torch::optim::SGD's arithmetic op by op, for tensors the fused loop cannot take.
void UpdateOpByOp(torch::Tensor& p, const torch::Tensor& grad, torch::Tensor& buf, bool first, float lr, float wd,
                  float momentum) {
  torch::Tensor d = wd != 0 ? grad.add(p, wd) : grad;
  if (buf.defined()) {
    if (first) {
      buf.copy_(d);
    } else {
      buf.mul_(momentum).add_(d);
    }
    d = buf;
  }
  p.add_(d, -lr);
}

}  // namespace

bool SameMemoryLayout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || !a.is_non_overlapping_and_dense() || !b.is_non_overlapping_and_dense()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

torch::Tensor FusedSGD::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    if (o.dampening() != 0 || o.nesterov()) return SGD::step(std::move(closure));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable(true);
    loss = closure();
  }
  std::vector<SgdSlice> slices;
  std::vector<int64_t> ends;  // running element count at the end of each slice
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    const float lr = static_cast<float>(o.lr()), wd = static_cast<float>(o.weight_decay());
    const float momentum = static_cast<float>(o.momentum());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      torch::Tensor buf;
      bool first = false;
      if (momentum != 0) {
        const compat::OptimizerStateKey key = compat::StateKey(p);
        auto it = state_.find(key);
        if (it == state_.end()) {
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(torch::empty_like(p));
          it = state_.emplace(key, std::move(state)).first;
          first = true;
        }
        buf = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
      }
      const bool fusable = p.scalar_type() == torch::kFloat32 && grad.scalar_type() == torch::kFloat32 &&
                           p.device().is_cpu() && SameMemoryLayout(grad, p) &&
                           (!buf.defined() || SameMemoryLayout(buf, p));
      if (!fusable) {
        UpdateOpByOp(p, grad, buf, first, lr, wd, momentum);
        continue;
      }
      slices.push_back({p.data_ptr<float>(), grad.data_ptr<float>(), buf.defined() ? buf.data_ptr<float>() : nullptr,
                        p.numel(), first, lr, wd, momentum});
      ends.push_back((ends.empty() ? 0 : ends.back()) + p.numel());
    }
  }
  if (slices.empty()) return loss;
  // One parallel region over every parameter's elements: a single fork/join
  // per step rather than one per tensor (each costs a barrier, and barriers
  // are slow when the machine is shared).
  at::parallel_for(0, ends.back(), 1 << 15, [&](int64_t begin, int64_t end) {
    size_t k = static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), begin) - ends.begin());
    for (; k < slices.size() && begin < end; ++k) {
      const int64_t start = ends[k] - slices[k].n;
      const int64_t stop = std::min(end, ends[k]);
      UpdateSlice(slices[k], begin - start, stop - start);
      begin = stop;
    }
  });
  return loss;
}

void ClearGradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
  }
}

FusedSGD MakeOptimizer(CSRNet& model, const TrainOptions& opts) {
  return FusedSGD(model->parameters(),
                  torch::optim::SGDOptions(opts.lr).momentum(opts.momentum).weight_decay(opts.weight_decay));
}

std::unique_ptr<torch::optim::Optimizer> MakeRunOptimizer(CSRNet& model, const TrainOptions& opts) {
  if (opts.optimizer == OptimizerKind::kAdam) {
    return std::make_unique<torch::optim::Adam>(model->parameters(),
                                                torch::optim::AdamOptions(opts.lr).weight_decay(opts.weight_decay));
  }
  return std::make_unique<FusedSGD>(MakeOptimizer(model, opts));
}

OptimizerKind KindOf(const torch::optim::Optimizer& optimizer) {
  return dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr ? OptimizerKind::kAdam : OptimizerKind::kSgd;
}

const char* OptimizerName(OptimizerKind kind) { return kind == OptimizerKind::kAdam ? "adam" : "sgd"; }

double LearningRate(const TrainOptions& opts, int64_t epoch) {
  double lr = opts.lr;
  for (double step : opts.lr_steps) {
    if (static_cast<double>(epoch + 1) >= step) lr *= opts.lr_gamma;
  }
  return lr;
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace csr
