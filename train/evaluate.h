// The `evaluate` tool: scores CSRNet weights on a test set, either a shard
// set's test split (crop_shards output) or a ShanghaiTech part straight from
// its images, .mat annotations and gt_gen density maps. Writes a per-image
// CSV, a JSON summary and a self-contained HTML report.
//
// No LibTorch includes here: the network runs through deploy/predictor.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "common/eval/metrics.h"
#include "common/io/datasets.h"
#include "common/io/resize.h"
#include "deploy/predictor.h"

namespace csr {

// Every option of `evaluate`.
struct EvaluateOptions {
  ModelSettings model;
  std::string shards;  // shard set folder or its split subfolder (or the positional argument)
  std::string root;    // dataset root: evaluate straight from the dataset instead of shards
  DatasetKind dataset = DatasetKind::kShanghaiTech;  // with --root: its layout (docs/datasets.md)
  std::string part = "A";                            // with --root, ShanghaiTech: A or B
  std::string val_list;                              // with --root, UCF-QNRF: the Train/ images forming the val split
  int fold = 0;                                      // with --root, UCF_CC_50: the cross-validation fold 1..5
  SizeChoice size;                                   // with --root: rescaling as crop_shards does it (auto per dataset)
  std::string split = "test";  // split to score (shards: the split's name; --root: train, val, test or all)
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
  // False when truth_map holds the heads' points only (each head's unit in
  // its 8 x 8 cell: no gt_gen map, or a rescaled image): counts and GAME are
  // exact, PSNR and SSIM are not defined against it and are left out.
  bool has_map = true;
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
// A dataset's images and annotations (any layout of docs/datasets.md; the
// options' root, dataset, part, val_list, fold, size and split), rescaled as
// crop_shards rescales them. The ground-truth map is gt_gen's density map
// summed over 8x8 blocks where one exists and the image is not rescaled,
// else the points' map (EvalSample::has_map false).
std::unique_ptr<EvalSource> OpenDatasetSource(const EvaluateOptions& options);

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
