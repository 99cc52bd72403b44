// The shard set (common/shards/shards.h) as a torch::data dataset, the per-epoch
// batch order, and a prefetching loader over them.
//
// Index space: a dataset with mirroring has 2 * records examples; example i
// is record i / 2, mirrored left-right when i is odd (the paper's doubling,
// done at load time so the shards hold each crop once).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/data/dataloader.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/data/samplers/base.h>

#include "common/shards/shards.h"

namespace csr {

class ShardDataset
    : public torch::data::datasets::BatchDataset<ShardDataset, torch::data::Example<>, std::vector<size_t>> {
 public:
  ShardDataset(std::shared_ptr<const ShardSet> shards, std::string split, bool mirror);

  // One example: data 3 x h x w (ImageNet-normalised RGB), target 1 x h/8 x w/8.
  // Throws csr::Error naming the shard set when the record is corrupt or its
  // target does not match the image's 1/8 grid.
  torch::data::Example<> get(size_t index) const;
  // Several examples of one size, stacked: data B x 3 x h x w, target B x 1 x h/8 x w/8.
  torch::data::Example<> get_batch(std::vector<size_t> indices) override;
  c10::optional<size_t> size() const override;

  int64_t records() const { return records_; }
  bool mirror() const { return mirror_; }
  // Labels of the record behind example `index` (no pixels read).
  RecordInfo info(size_t index) const;
  const std::string& split() const { return split_; }
  // Batches in page-locked (pinned) host memory, so that copies to a GPU run
  // asynchronously (Tensor::to(device, non_blocking)); needs a CUDA LibTorch.
  void set_pin_memory(bool pin) { pin_memory_ = pin; }

 private:
  cv::Size Load(size_t index, cv::Mat* image, cv::Mat* target) const;
  void Fill(size_t index, const cv::Mat& image, const cv::Mat& target, float* data, float* target_out) const;

  std::shared_ptr<const ShardSet> shards_;
  std::string split_;
  bool mirror_;
  int64_t records_;
  bool pin_memory_ = false;
};

// The batches of one epoch: every example index once, in an order shuffled
// from (seed, epoch) alone (so a resumed run sees the same order), grouped
// into batches of up to `batch_size` examples of equal image size. A batch is
// emitted when it fills; partial batches follow at the end, in order of their
// first example. `sizes[i]` is example i's (width, height).
std::vector<std::vector<size_t>> PlanEpoch(const std::vector<std::pair<int, int>>& sizes, int batch_size, uint64_t seed,
                                           int64_t epoch);
// Example sizes of a dataset (read from record headers only).
std::vector<std::pair<int, int>> ExampleSizes(const ShardDataset& dataset);

// Hands out a precomputed list of batches, starting at `skip` (to continue an
// epoch part-way through after a resume). reset() rewinds to `skip`.
class PlannedSampler : public torch::data::samplers::Sampler<std::vector<size_t>> {
 public:
  PlannedSampler(std::vector<std::vector<size_t>> batches, size_t skip);
  void reset(c10::optional<size_t> new_size = c10::nullopt) override;
  c10::optional<std::vector<size_t>> next(size_t batch_size) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  std::vector<std::vector<size_t>> batches_;
  size_t skip_;
  size_t pos_;
};

// Background workers decode and normalise batches ahead of the training step
// (torch's DataLoader with `workers` threads and at most `prefetch` batches
// in flight, delivered in plan order). Measures how long the consumer waits.
class BatchLoader {
 public:
  BatchLoader(const ShardDataset& dataset, std::vector<std::vector<size_t>> batches, size_t skip, int workers,
              int prefetch);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch, or false at the end of the plan. A worker's exception is
  // rethrown here as it was thrown (e.g. csr::Error naming a corrupt shard).
  bool Next(torch::data::Example<>* batch);
  // Seconds spent blocked in Next() so far.
  double wait_seconds() const { return wait_seconds_; }

 private:
  using Loader = torch::data::StatelessDataLoader<ShardDataset, PlannedSampler>;
  std::unique_ptr<Loader> loader_;
  c10::optional<torch::data::Iterator<torch::data::Example<>>> it_;
  double wait_seconds_ = 0.0;
  bool done_ = false;
};

}  // namespace csr
