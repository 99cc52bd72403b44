// CSRNet's fp32 forward pass on the CPU with the weights packed once: every
// convolution's weights reordered into oneDNN's blocked layout when the model
// is loaded, and the activations kept in that layout from the first
// convolution to the last. LibTorch's standard path reorders each weight and
// each activation on every call (about a fifth of fp32 inference time). Same
// convolution kernels, same arithmetic: results equal the standard path to
// float rounding. Used by Predictor (deploy/predictor.h) when LibTorch has
// oneDNN.
#pragma once

#include <vector>

#include <ATen/core/TensorBody.h>

#include "train/model.h"

namespace csr {

class PackedForward {
 public:
  // Packs the model's current weights (later changes to the model are not
  // seen). Throws csr::Error for a module CSRNet does not have.
  explicit PackedForward(CSRNet& model);

  // x: dense 1 x 3 x h x w float -> dense 1 x 1 x h/8 x w/8 float.
  at::Tensor Run(const at::Tensor& x) const;

 private:
  struct Layer {
    bool pool = false, relu = false;
    at::Tensor weight, bias;
    int64_t padding = 0, dilation = 1;
  };
  void Add(torch::nn::Module& module);

  std::vector<Layer> layers_;
};

}  // namespace csr
