#include "train/dataset.h"

#include <chrono>
#include <map>
#include <random>
#include <utility>

#include <opencv2/core.hpp>
#include <torch/data/dataloader_options.h>
#include <torch/data/worker_exception.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/random.h"
#include "train/inference.h"

namespace csr {

ShardDataset::ShardDataset(std::shared_ptr<const ShardSet> shards, std::string split, bool mirror)
    : shards_(std::move(shards)), split_(std::move(split)), mirror_(mirror) {
  records_ = shards_->size(split_);
}

c10::optional<size_t> ShardDataset::size() const { return static_cast<size_t>(records_ * (mirror_ ? 2 : 1)); }

RecordInfo ShardDataset::info(size_t index) const {
  return shards_->Info(split_, static_cast<int64_t>(mirror_ ? index / 2 : index));
}

cv::Size ShardDataset::Load(size_t index, cv::Mat* image, cv::Mat* target) const {
  const int64_t record = static_cast<int64_t>(mirror_ ? index / 2 : index);
  ShardRecord r = shards_->Read(split_, record);
  const std::string where = StrCat(shards_->dir().string(), ": ", split_, " record ", record);
  CSR_CHECK(r.image.type() == CV_8UC3 && r.image.rows > 0 && r.image.cols > 0, where, "image is not h x w x 3 uint8");
  CSR_CHECK(r.target.type() == CV_32FC1 && r.target.rows == r.image.rows / 8 && r.target.cols == r.image.cols / 8,
            where, "target is ", r.target.cols, "x", r.target.rows, ", expected the image's 1/8 grid ",
            r.image.cols / 8, "x", r.image.rows / 8);
  *image = std::move(r.image);
  *target = std::move(r.target);
  return image->size();
}

void ShardDataset::Fill(size_t index, const cv::Mat& image, const cv::Mat& target, float* data,
                        float* target_out) const {
  const bool flip = mirror_ && index % 2 == 1;
  NormalizeImage(image, flip, data);
  cv::Mat out(target.rows, target.cols, CV_32FC1, target_out);
  if (flip) {
    cv::flip(target, out, 1);
  } else {
    target.copyTo(out);
  }
}

torch::data::Example<> ShardDataset::get(size_t index) const {
  auto batch = const_cast<ShardDataset*>(this)->get_batch({index});
  return {batch.data[0], batch.target[0]};
}

torch::data::Example<> ShardDataset::get_batch(std::vector<size_t> indices) {
  // Plain loops into preallocated tensors: no torch ops here, so worker
  // threads never start intra-op thread teams of their own.
  CSR_CHECK(!indices.empty(), shards_->dir().string(), "empty batch");
  std::vector<cv::Mat> images(indices.size()), targets(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    const cv::Size size = Load(indices[k], &images[k], &targets[k]);
    CSR_CHECK(size == images[0].size(), shards_->dir().string(), "a batch mixes record sizes");
  }
  const int64_t b = static_cast<int64_t>(indices.size()), h = images[0].rows, w = images[0].cols;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pin_memory_);
  torch::Tensor data = torch::empty({b, 3, h, w}, options);
  torch::Tensor target = torch::empty({b, 1, h / 8, w / 8}, options);
  for (size_t k = 0; k < indices.size(); ++k) {
    Fill(indices[k], images[k], targets[k], data.data_ptr<float>() + k * 3 * h * w,
         target.data_ptr<float>() + k * (h / 8) * (w / 8));
  }
  return {data, target};
}

std::vector<std::pair<int, int>> ExampleSizes(const ShardDataset& dataset) {
  std::vector<std::pair<int, int>> sizes(dataset.size().value());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (dataset.mirror() && i % 2 == 1) {
      sizes[i] = sizes[i - 1];
      continue;
    }
    const RecordInfo info = dataset.info(i);
    sizes[i] = {info.width, info.height};
  }
  return sizes;
}

std::vector<std::vector<size_t>> PlanEpoch(const std::vector<std::pair<int, int>>& sizes, int batch_size, uint64_t seed,
                                           int64_t epoch) {
  // Fisher-Yates with ModuloDraw (common/base/random.h): unlike std::shuffle
  // and std::uniform_int_distribution, the order is the same with every
  // standard library, so a checkpoint resumes identically anywhere.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(epoch),
                    static_cast<uint32_t>(static_cast<uint64_t>(epoch) >> 32)};
  std::mt19937_64 rng(seq);
  std::vector<size_t> order(sizes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[ModuloDraw(rng, i)]);

  const size_t b = static_cast<size_t>(std::max(1, batch_size));
  std::vector<std::vector<size_t>> batches;
  // size -> (position of the batch's first example in `order`, the filling batch)
  std::map<std::pair<int, int>, std::pair<size_t, std::vector<size_t>>> open;
  for (size_t k = 0; k < order.size(); ++k) {
    auto& [first, pending] = open[sizes[order[k]]];
    if (pending.empty()) first = k;
    pending.push_back(order[k]);
    if (pending.size() == b) {
      batches.push_back(std::move(pending));
      pending.clear();
    }
  }
  std::map<size_t, std::vector<size_t>> leftovers;
  for (auto& [size, entry] : open) {
    if (!entry.second.empty()) leftovers[entry.first] = std::move(entry.second);
  }
  for (auto& [first, batch] : leftovers) batches.push_back(std::move(batch));
  return batches;
}

PlannedSampler::PlannedSampler(std::vector<std::vector<size_t>> batches, size_t skip)
    : batches_(std::move(batches)), skip_(std::min(skip, batches_.size())), pos_(skip_) {}

void PlannedSampler::reset(c10::optional<size_t> /*new_size*/) { pos_ = skip_; }

c10::optional<std::vector<size_t>> PlannedSampler::next(size_t /*batch_size*/) {
  if (pos_ >= batches_.size()) return c10::nullopt;
  return batches_[pos_++];
}

void PlannedSampler::save(torch::serialize::OutputArchive& archive) const {
  archive.write("pos", torch::tensor(static_cast<int64_t>(pos_)));
}

void PlannedSampler::load(torch::serialize::InputArchive& archive) {
  torch::Tensor pos;
  archive.read("pos", pos);
  pos_ = static_cast<size_t>(pos.item<int64_t>());
}

BatchLoader::BatchLoader(const ShardDataset& dataset, std::vector<std::vector<size_t>> batches, size_t skip,
                         int workers, int prefetch) {
  auto options = torch::data::DataLoaderOptions()
                     .batch_size(1)  // the sampler's planned batches decide
                     .workers(static_cast<size_t>(std::max(0, workers)))
                     .max_jobs(static_cast<size_t>(std::max(1, prefetch)))
                     .enforce_ordering(true);
  loader_ = std::make_unique<Loader>(dataset, PlannedSampler(std::move(batches), skip), options);
}

BatchLoader::~BatchLoader() = default;

bool BatchLoader::Next(torch::data::Example<>* batch) {
  if (done_) return false;
  const auto start = std::chrono::steady_clock::now();
  try {
    // The iterator fetches lazily: the wait happens in the comparison.
    if (!it_) {
      it_.emplace(loader_->begin());
    } else {
      ++*it_;
    }
    done_ = *it_ == loader_->end();
    if (!done_) *batch = **it_;
  } catch (const torch::data::WorkerException& e) {
    std::rethrow_exception(e.original_exception);
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return !done_;
}

}  // namespace csr
