// Dynamic loss scaling for fp16 training, with the rules and defaults of
// PyTorch's torch.cuda.amp.GradScaler: the loss is multiplied by a scale
// before backward so that small fp16 gradients do not flush to zero; the
// gradients are divided by it before the optimizer's step; a step whose
// gradients overflowed (inf/NaN) is skipped and the scale halves, and after
// `growth_interval` clean steps in a row it doubles. Powers of two scale
// exactly, so with finite gradients the step is the unscaled one bit for bit.
// The scale and the clean-step count are saved in the checkpoint
// (TrainState), so a resumed fp16 run continues exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace csr {

class GradScaler {
 public:
  struct Options {
    double init_scale = 65536.0;  // 2^16
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };
  GradScaler() : GradScaler(Options{}) {}
  explicit GradScaler(const Options& options);

  double scale() const { return scale_; }
  // Clean steps since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }
  // Continues from a checkpoint's values; throws csr::Error naming `where`
  // unless scale is a positive finite number and tracker lies in
  // [0, growth_interval).
  void Restore(double scale, int64_t tracker, const std::string& where);

  // Divides every defined gradient of `params` by the scale, in place.
  // Returns false when any of them holds an inf or NaN (the step must then be
  // skipped); the gradients are left divided either way.
  bool Unscale(const std::vector<at::Tensor>& params) const;
  // Once per step, after Unscale: backs off after an overflow, grows after
  // growth_interval clean steps in a row.
  void Update(bool finite);

 private:
  Options options_;
  double scale_;
  int64_t growth_tracker_ = 0;
};

}  // namespace csr
