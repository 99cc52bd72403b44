#include "train/synthetic_shards.h"

#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "common/fs.h"

namespace csr {

ShardRecord SyntheticRecord(std::mt19937& rng, int width, int height, int max_heads, int index) {
  ShardRecord r;
  r.image = cv::Mat(height, width, CV_8UC3);
  cv::RNG noise(rng());
  noise.fill(r.image, cv::RNG::UNIFORM, cv::Scalar(20, 20, 20), cv::Scalar(60, 60, 60));
  r.target = cv::Mat::zeros(height / 8, width / 8, CV_32F);
  const int heads = static_cast<int>(rng() % static_cast<unsigned>(std::max(1, max_heads)));
  for (int k = 0; k < heads; ++k) {
    const int x = static_cast<int>(rng() % static_cast<unsigned>(width / 8 * 8));
    const int y = static_cast<int>(rng() % static_cast<unsigned>(height / 8 * 8));
    cv::circle(r.image, {x, y}, 3, cv::Scalar(230, 200, 170), cv::FILLED);
    r.target.at<float>(y / 8, x / 8) += 1.0f;
  }
  cv::GaussianBlur(r.target, r.target, {3, 3}, 0.6, 0.6, cv::BORDER_CONSTANT);
  r.source = "SYN_" + std::to_string(index) + ".png";
  r.box = {0, 0, width, height};
  r.count = heads;
  r.density_sum = cv::sum(r.target)[0];
  return r;
}

void WriteSyntheticShards(const std::filesystem::path& dir, const SyntheticShardSpec& spec) {
  std::mt19937 rng(spec.seed);
  nlohmann::json splits;
  for (const std::string split : {"train", "test"}) {
    const bool train = split == "train";
    ShardWriter writer(dir, split, /*records_per_shard=*/64, /*deflate=*/1);
    const int n = train ? spec.train : spec.test;
    for (int i = 0; i < n; ++i) {
      ShardRecord r = SyntheticRecord(rng, train ? spec.train_w : spec.test_w, train ? spec.train_h : spec.test_h,
                                      spec.max_heads, i);
      r.crop = train ? 4 : -1;
      writer.Add(EncodeRecord(r, 1));
    }
    splits[split] = SplitManifest(writer.Finish());
  }
  const nlohmann::json manifest = {
      {"format_version", kShardFormatVersion}, {"splits", splits}, {"source", "synthetic (train/synthetic_shards.h)"}};
  WriteTextFileAtomic(dir / kManifestName, manifest.dump(2));
}

}  // namespace csr
