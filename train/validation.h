// The trainer's validation pass over the test split of a shard set: count
// errors against the annotations and the density sums, and the loss.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "train/dataset.h"
#include "train/inference.h"
#include "train/model.h"

namespace csr {

struct ValidationResult {
  int64_t images = 0;
  double mae = 0, rmse = 0;                  // against the annotation count (the paper's measure)
  double mae_density = 0, rmse_density = 0;  // against the ground-truth density sum
  double loss = 0;                           // mean sum of squared errors over the 1/8 maps
  bool complete = true;                      // false when `stop` interrupted it
  // The sums behind the means: |error|, error^2 against the counts and the
  // density sums, and the loss. Ranks add these up (Finish() makes the means).
  std::array<double, 5> sums{};
  void Finish();
};
// Validation over a dataset of whole images (batch 1), in eval mode without
// autograd, tiled above opts.tile. `stop` is polled between images. With
// `stride` > 1 only images offset, offset + stride, ... (one rank's share).
ValidationResult Validate(CSRNet& model, const ShardDataset& test, const InferenceOptions& opts, int workers,
                          const std::function<bool()>& stop = {}, size_t offset = 0, size_t stride = 1);

}  // namespace csr
