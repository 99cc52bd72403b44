// Tiny synthetic shard sets (blobs on a noisy background, one unit of
// density per blob) for the trainer's tests, its benchmark's convergence
// check, and smoke runs: no dataset, gt_gen or crop_shards needed.
#pragma once

#include <filesystem>
#include <random>

#include "common/shards.h"

namespace csr {

struct SyntheticShardSpec {
  int train = 8;                   // training crops
  int test = 2;                    // whole test images
  int train_w = 64, train_h = 48;  // crop size (multiples of 8)
  int test_w = 100, test_h = 75;   // test image size (any)
  int max_heads = 12;              // heads per image: uniform in [0, max_heads)
  unsigned seed = 7;
};

// One record: a dark noisy RGB picture with bright discs ("heads"); its 1/8
// target puts one unit per head in the head's cell, slightly blurred, so the
// target sums to the count (up to what the blur pushes over the border).
ShardRecord SyntheticRecord(std::mt19937& rng, int width, int height, int max_heads, int index);

// Writes a complete shard set (train crops, test images, manifest) to `dir`.
void WriteSyntheticShards(const std::filesystem::path& dir, const SyntheticShardSpec& spec = {});

}  // namespace csr
