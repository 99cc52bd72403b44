// The `evaluate` tool: scores CSRNet weights on a test set, either a shard
// set's test split (crop_shards output) or a ShanghaiTech part straight from
// its images, .mat annotations and gt_gen density maps. Writes a per-image
// CSV, a JSON summary and a self-contained HTML report.
//
// No LibTorch includes here: the network runs through train/predict.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "common/eval/metrics.h"
#include "train/predictor.h"

namespace csr {

// Every option of `evaluate`.
struct EvaluateOptions {
  ModelSettings model;
  std::string shards;          // shard set folder or its split subfolder (or the positional argument)
  std::string root;            // ShanghaiTech root: evaluate straight from the dataset instead of shards
  std::string part = "A";      // with --root: A or B
  std::string split = "test";  // split to score (shards: the split's name; --root: train, test or all)
  std::string csv;             // per-image CSV (empty = none)
  std::string json;            // JSON summary (empty = none)
  std::string report;          // HTML report (empty = none)
  int worst = 10;              // images shown with their heatmaps in the report
  double alpha = 0.5;          // heatmap opacity in the report

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};
void RegisterEvaluateOptions(ArgParser& parser, EvaluateOptions* opts);

// One test image, as a source hands it over.
struct EvalSample {
  std::string name;   // file name (shards: the record's source image)
  cv::Mat rgb;        // CV_8UC3
  cv::Mat truth_map;  // ground-truth density at 1/8 (CV_32F, floor(h/8) x floor(w/8))
  double count = 0;   // annotation count
};

// A test set. Load() throws csr::Error naming the file for a bad item; the
// caller reports it and goes on.
class EvalSource {
 public:
  virtual ~EvalSource() = default;
  virtual int64_t size() const = 0;
  virtual EvalSample Load(int64_t index) const = 0;
  // "shard set shards/ (test split, 182 images)".
  virtual std::string Describe() const = 0;
  // The benchmark attributes of a loaded sample, for the per-group
  // breakdown (NWPU-Crowd: illumination, scene level; JHU-Crowd++: weather,
  // count range). Empty for datasets without any.
  virtual std::map<std::string, std::string> Tags(const EvalSample& sample) const {
    (void)sample;
    return {};
  }
};
// `path` is the shard set folder (scores `split`) or one of its split
// subfolders, e.g. shards/test (scores that split).
std::unique_ptr<EvalSource> OpenShardSource(const std::string& path, const std::string& split);
// Images, GT_IMG_n.mat annotations and gt_gen's <gt dir>/IMG_n.h5 (dataset
// `density`, summed over 8x8 blocks to the 1/8 map).
std::unique_ptr<EvalSource> OpenDatasetSource(const std::string& root, const std::string& part,
                                              const std::string& split);

// Per-image results and the summary.
struct EvalRow {
  std::string name;
  int width = 0, height = 0;
  ImageMetrics metrics;
};
struct EvaluateResult {
  std::vector<EvalRow> rows;
  MetricsSummary summary;
  std::vector<GroupSummary> groups;  // the benchmark's breakdown (empty when the source has no tags)
  int64_t failed = 0;                // images that could not be read or scored
  double seconds = 0;                // wall time of the loop
};

// The CSV (one row per image) and the JSON summary as written to disk.
std::string EvaluationCsv(const EvaluateResult& result);
nlohmann::json EvaluationJson(const EvaluateResult& result, const nlohmann::json& context);

// The `evaluate` tool: evaluate --weights FILE SHARDS[/test] | --root DIR
// --part A --split test [--csv F] [--json F] [--report F.html]. Returns 0,
// 1 when an image failed (the others are still scored), 2 for bad usage.
int RunEvaluate(int argc, const char* const* argv);

}  // namespace csr
