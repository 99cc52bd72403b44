// The shard dataset, the per-epoch batch plan and the prefetching loader.
#include "tests/train/train_test_util.h"

#include <fstream>
#include <set>

#include "common/base/error.h"
#include "tests/test_util.h"
#include "train/dataset.h"

namespace csr {
namespace {

using test::TempDir;

std::vector<size_t> Flatten(const std::vector<std::vector<size_t>>& batches) {
  std::vector<size_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

TEST_CASE("each epoch visits every example once, in an order fixed by seed and epoch") {
  std::vector<std::pair<int, int>> sizes(20, {64, 48});
  const auto a = PlanEpoch(sizes, 1, 5, 0);
  CHECK(a.size() == 20);
  std::vector<size_t> all = Flatten(a);
  CHECK(std::set<size_t>(all.begin(), all.end()).size() == 20);
  CHECK(Flatten(PlanEpoch(sizes, 1, 5, 0)) == all);
  CHECK(Flatten(PlanEpoch(sizes, 1, 5, 1)) != all);
  CHECK(Flatten(PlanEpoch(sizes, 1, 6, 0)) != all);
  std::vector<size_t> identity(20);
  for (size_t i = 0; i < 20; ++i) identity[i] = i;
  CHECK(all != identity);
}

TEST_CASE("--batch-size groups examples of equal size only") {
  std::vector<std::pair<int, int>> sizes;
  for (int i = 0; i < 23; ++i) sizes.push_back(i % 3 == 0 ? std::make_pair(64, 48) : std::make_pair(80, 40));
  const auto batches = PlanEpoch(sizes, 4, 9, 2);
  size_t full = 0;
  for (const auto& b : batches) {
    REQUIRE(!b.empty());
    CHECK(b.size() <= 4);
    for (size_t i : b) CHECK(sizes[i] == sizes[b[0]]);
    full += b.size() == 4;
  }
  // 8 of one size, 15 of the other: 2 + 3 full batches and one partial of 3.
  CHECK(full == 5);
  CHECK(batches.size() == 6);
  CHECK(batches.back().size() == 3);
  std::vector<size_t> all = Flatten(batches);
  CHECK(std::set<size_t>(all.begin(), all.end()).size() == 23);
}

TEST_CASE("the dataset doubles the records with mirrored copies, normalised, targets flipped too") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp.path(), {/*train=*/3, /*test=*/1});
  auto shards = std::make_shared<const ShardSet>(tmp.path());
  ShardDataset train(shards, "train", true);
  ShardDataset test(shards, "test", false);
  CHECK(train.size().value() == 6);
  CHECK(test.size().value() == 1);
  const ShardRecord r = shards->Read("train", 1);
  const auto plain = train.get(2), mirrored = train.get(3);
  REQUIRE(plain.data.sizes() == std::vector<int64_t>{3, 48, 64});
  REQUIRE(plain.target.sizes() == std::vector<int64_t>{1, 6, 8});
  CHECK(torch::equal(plain.data.flip({2}), mirrored.data));
  CHECK(torch::equal(plain.target.flip({2}), mirrored.target));
  CHECK(plain.target.sum().item<double>() == doctest::Approx(r.density_sum).epsilon(1e-5));
  const cv::Vec3b px = r.image.at<cv::Vec3b>(5, 7);
  CHECK(plain.data[1][5][7].item<float>() == doctest::Approx((px[1] / 255.0 - 0.456) / 0.224).epsilon(1e-5));
  CHECK(train.info(3).count == r.count);
  const auto batch = train.get_batch({0, 5, 2});
  CHECK(batch.data.sizes() == std::vector<int64_t>{3, 3, 48, 64});
  CHECK(torch::equal(batch.data[2], plain.data));
  CHECK(ExampleSizes(train) == std::vector<std::pair<int, int>>(6, {64, 48}));
}

TEST_CASE("the loader delivers the plan's batches in order from background workers, resuming mid-plan") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp.path(), {/*train=*/6, /*test=*/1});
  auto shards = std::make_shared<const ShardSet>(tmp.path());
  ShardDataset train(shards, "train", true);
  const auto plan = PlanEpoch(ExampleSizes(train), 2, 3, 0);
  REQUIRE(plan.size() == 6);
  for (size_t skip : {size_t{0}, size_t{4}}) {
    BatchLoader loader(train, plan, skip, /*workers=*/2, /*prefetch=*/3);
    torch::data::Example<> batch;
    size_t k = skip;
    while (loader.Next(&batch)) {
      REQUIRE(k < plan.size());
      CHECK(torch::equal(batch.data, train.get_batch(plan[k]).data));
      ++k;
    }
    CHECK(k == plan.size());
    CHECK_FALSE(loader.Next(&batch));
    CHECK(loader.wait_seconds() >= 0.0);
  }
}

TEST_CASE("a corrupt shard surfaces from a worker thread as one error naming it") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp.path(), {/*train=*/4, /*test=*/1});
  const fs::path shard = tmp / "train/shard-00000.h5";
  {
    // Flip bytes in the second half of the file, where the record data lies.
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(shard));
    for (std::streamoff pos = size / 2; pos < size - 16; pos += 97) {
      f.seekp(pos);
      f.put('\x5a');
    }
  }
  std::string message;
  try {
    auto shards = std::make_shared<const ShardSet>(tmp.path());
    ShardDataset train(shards, "train", true);
    std::vector<std::vector<size_t>> plan;
    for (size_t i = 0; i < 8; ++i) plan.push_back({i});
    BatchLoader loader(train, plan, 0, 2, 2);
    torch::data::Example<> batch;
    while (loader.Next(&batch)) {
    }
  } catch (const Error& e) {
    message = e.what();
  }
  MESSAGE(message);
  CHECK(message.find("shard-00000.h5") != std::string::npos);
}

}  // namespace
}  // namespace csr
