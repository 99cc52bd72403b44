// Fixtures for the trainer tests: tiny synthetic shard sets and models with
// non-vanishing activations. Include this before anything else in a train
// test: it pulls in LibTorch, drops glog's CHECK macros (which LibTorch's
// logging defines) and then includes doctest, whose CHECK the tests use.
#pragma once

#include <torch/torch.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "common/fs.h"
#include "common/shards.h"
#include "train/model.h"

namespace csr::test {

struct SyntheticSpec {
  int train = 8;                     // training crops
  int test = 2;                      // whole test images
  int train_w = 64, train_h = 48;    // crop size (multiples of 8)
  int test_w = 100, test_h = 75;     // test image size (any)
  unsigned seed = 7;
};

// A dark noisy picture with bright blobs ("heads"); its 1/8 target puts one
// unit per head in the head's cell, slightly blurred (sum = count).
inline ShardRecord SyntheticRecord(std::mt19937& rng, int w, int h, int index) {
  ShardRecord r;
  r.image = cv::Mat(h, w, CV_8UC3);
  cv::randu(r.image, cv::Scalar(20, 20, 20), cv::Scalar(60, 60, 60));
  r.target = cv::Mat::zeros(h / 8, w / 8, CV_32F);
  const int heads = static_cast<int>(rng() % 12);
  for (int k = 0; k < heads; ++k) {
    const int x = static_cast<int>(rng() % static_cast<unsigned>(w / 8 * 8));
    const int y = static_cast<int>(rng() % static_cast<unsigned>(h / 8 * 8));
    cv::circle(r.image, {x, y}, 3, cv::Scalar(230, 200, 170), cv::FILLED);
    r.target.at<float>(y / 8, x / 8) += 1.0f;
  }
  cv::GaussianBlur(r.target, r.target, {3, 3}, 0.6, 0.6, cv::BORDER_CONSTANT);
  r.source = "SYN_" + std::to_string(index) + ".png";
  r.box = {0, 0, w, h};
  r.count = heads;
  r.density_sum = cv::sum(r.target)[0];
  return r;
}

// Writes a complete shard set (train crops, test images, manifest) to `dir`.
inline void WriteSyntheticShards(const std::filesystem::path& dir, const SyntheticSpec& spec = {}) {
  std::mt19937 rng(spec.seed);
  nlohmann::json splits;
  for (const std::string split : {"train", "test"}) {
    const bool train = split == "train";
    ShardWriter writer(dir, split, /*records_per_shard=*/5, /*deflate=*/1);
    const int n = train ? spec.train : spec.test;
    for (int i = 0; i < n; ++i) {
      ShardRecord r = SyntheticRecord(rng, train ? spec.train_w : spec.test_w, train ? spec.train_h : spec.test_h, i);
      r.crop = train ? 4 : -1;
      writer.Add(EncodeRecord(r, 1));
    }
    splits[split] = SplitManifest(writer.Finish());
  }
  nlohmann::json manifest = {{"format_version", kShardFormatVersion}, {"splits", splits}};
  WriteTextFileAtomic(dir / kManifestName, manifest.dump(2));
}

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
