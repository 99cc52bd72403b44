#include "train/grad_scaler.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "common/base/error.h"

namespace csr {

GradScaler::GradScaler(const Options& options) : options_(options), scale_(options.init_scale) {
  CSR_CHECK(std::isfinite(options.init_scale) && options.init_scale > 0, "GradScaler", "init_scale must be > 0");
  CSR_CHECK(options.growth_factor > 1 && options.backoff_factor > 0 && options.backoff_factor < 1, "GradScaler",
            "growth_factor must be > 1 and backoff_factor in (0, 1)");
  CSR_CHECK(options.growth_interval > 0, "GradScaler", "growth_interval must be > 0");
}

void GradScaler::Restore(double scale, int64_t tracker, const std::string& where) {
  if (!std::isfinite(scale) || scale <= 0) {
    throw Error(where, StrCat("holds the loss scale ", scale, " (expected a positive number; corrupt checkpoint)"));
  }
  if (tracker < 0 || tracker >= options_.growth_interval) {
    throw Error(where, StrCat("holds the loss scale's clean-step count ", tracker, " (expected 0..",
                              options_.growth_interval - 1, "; corrupt checkpoint)"));
  }
  scale_ = scale;
  growth_tracker_ = tracker;
}

bool GradScaler::Unscale(const std::vector<at::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  const double inverse = 1.0 / scale_;
  at::Tensor finite;  // one flag on the gradients' device: a single sync at the end
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) continue;
    at::Tensor g = p.grad();
    g.mul_(inverse);
    const at::Tensor ok = at::isfinite(g).all();
    finite = finite.defined() ? finite.logical_and(ok) : ok;
  }
  return !finite.defined() || finite.item<bool>();
}

void GradScaler::Update(bool finite) {
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ == options_.growth_interval) {
    // Like PyTorch, growth stops where the scale would overflow fp32.
    const double grown = scale_ * options_.growth_factor;
    if (std::isfinite(static_cast<float>(grown))) scale_ = grown;
    growth_tracker_ = 0;
  }
}

}  // namespace csr
