#include "train/packed_forward.h"

#include <ATen/Functions.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include "common/base/error.h"

namespace csr {

PackedForward::PackedForward(CSRNet& model) {
  torch::NoGradGuard no_grad;
  for (torch::nn::Sequential* seq : {&model->frontend, &model->backend}) {
    for (const auto& child : (*seq)->children()) Add(*child);
  }
  Add(*model->output_layer);
}

at::Tensor PackedForward::Run(const at::Tensor& x) const {
  torch::NoGradGuard no_grad;
  at::Tensor y = x.contiguous().to_mkldnn();
  for (const Layer& l : layers_) {
    if (l.pool) {
      y = at::max_pool2d(y, {2, 2}, {2, 2});
      continue;
    }
    y = at::mkldnn_convolution(y, l.weight, l.bias, {l.padding, l.padding}, {1, 1}, {l.dilation, l.dilation}, 1);
    if (l.relu) y = at::relu_(y);
  }
  return y.to_dense();
}

void PackedForward::Add(torch::nn::Module& m) {
  if (auto* conv = m.as<torch::nn::Conv2d>()) {
    Layer l;
    // CSRNet's convolutions keep the size: padding = dilation * (kernel - 1) / 2.
    l.dilation = (*conv->options.dilation())[0];
    l.padding = l.dilation * (conv->weight.size(2) - 1) / 2;
    const at::Tensor w = conv->weight.detach().to(at::kFloat).contiguous();
    l.weight =
        at::mkldnn_reorder_conv2d_weight(w.to_mkldnn(), {l.padding, l.padding}, {1, 1}, {l.dilation, l.dilation}, 1);
    l.bias = conv->bias.detach().to(at::kFloat).contiguous().to_mkldnn();
    layers_.push_back(std::move(l));
  } else if (m.as<torch::nn::ReLU>()) {
    CSR_CHECK(!layers_.empty() && !layers_.back().pool, "model", "unexpected ReLU position");
    layers_.back().relu = true;
  } else if (m.as<torch::nn::MaxPool2d>()) {
    Layer l;
    l.pool = true;
    layers_.push_back(l);
  } else {
    throw Error("model", StrCat("unexpected module ", m.name(), " in CSRNet"));
  }
}

}  // namespace csr
