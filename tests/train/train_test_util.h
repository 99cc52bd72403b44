// Fixtures for the trainer tests: tiny synthetic shard sets and models with
// non-vanishing activations. Include this before anything else in a train
// test: it pulls in LibTorch, drops glog's CHECK macros (which LibTorch's
// logging defines) and then includes doctest, whose CHECK the tests use.
#pragma once

#include "tests/train/torch_doctest.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tests/fixtures/synthetic_shards.h"
#include "train/model.h"

namespace csr::test {

using SyntheticSpec = SyntheticShardSpec;
using ::csr::WriteSyntheticShards;

// He-initialised weights: activations keep their scale through the 17 convs,
// so comparisons between inference paths are not trivially all-zero.
inline void HeInit(CSRNet& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.value().dim() == 4) {
      const double fan_in = static_cast<double>(p.value()[0].numel());
      torch::nn::init::normal_(p.value(), 0.0, std::sqrt(2.0 / fan_in));
    } else {
      torch::nn::init::normal_(p.value(), 0.0, 0.01);
    }
  }
}

}  // namespace csr::test
