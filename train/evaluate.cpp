#include "train/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/eval/report.h"
#include "common/io/dataset.h"
#include "common/io/density_map.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "common/io/mat_io.h"
#include "common/io/point_files.h"
#include "common/shards/shards.h"
#include "deploy/heatmap.h"

namespace csr {
namespace {

// ---- Sources ------------------------------------------------------------------

// The attributes NWPU-Crowd and JHU-Crowd++ report their results by, read
// from the dataset's own files under the root the shard set's manifest
// records (docs/datasets.md). Keyed by image stem.
class BenchmarkTags {
 public:
  explicit BenchmarkTags(const nlohmann::json& manifest) {
    // crop_shards writes an object; another writer's manifest may say
    // anything there, and then there are no tags to read.
    const auto it = manifest.find("source");
    const nlohmann::json source = it != manifest.end() && it->is_object() ? *it : nlohmann::json::object();
    const auto text = [&source](const char* key, const char* fallback) {
      const auto v = source.find(key);
      return v != source.end() && v->is_string() ? v->get<std::string>() : std::string(fallback);
    };
    dataset_ = text("dataset", "");
    const fs::path root = text("root", "");
    const std::string split = text("eval_split", "test");
    try {
      if (dataset_ == "nwpu") {
        for (const ListEntry& e : ReadListFile((root / (split + ".txt")).string())) {
          if (e.fields.size() >= 2) tags_[e.id] = {{"illumination", e.fields[0]}, {"scene level", e.fields[1]}};
        }
      } else if (dataset_ == "jhu") {
        static const char* const kWeather[] = {"0 (none)", "1 (fog/haze)", "2 (rain)", "3 (snow)"};
        for (const auto& [id, label] : ReadJhuLabels((root / split / "image_labels.txt").string())) {
          tags_[id] = {{"weather", kWeather[label.weather]}};
        }
      }
    } catch (const Error& e) {
      log::Warn(e.what(), " (no per-group breakdown)");
      tags_.clear();
    }
  }
  std::map<std::string, std::string> Of(const EvalSample& s) const {
    std::map<std::string, std::string> t;
    if (auto it = tags_.find(fs::path(s.name).stem().string()); it != tags_.end()) t = it->second;
    if (dataset_ == "jhu") t["count range"] = JhuCountRange(s.count);
    return t;
  }

 private:
  std::string dataset_;
  std::map<std::string, std::map<std::string, std::string>> tags_;
};

class ShardSource : public EvalSource {
 public:
  ShardSource(const fs::path& dir, std::string split) : set_(dir), split_(std::move(split)), tags_(set_.manifest()) {
    const std::vector<std::string> splits = set_.splits();
    if (std::find(splits.begin(), splits.end(), split_) == splits.end()) {
      throw Error(dir.string(), StrCat("shard set has no '", split_, "' split"));
    }
    size_ = set_.size(split_);
  }
  int64_t size() const override { return size_; }
  EvalSample Load(int64_t index) const override {
    ShardRecord r = set_.Read(split_, index);
    if (r.crop != -1) {
      throw Error(set_.dir().string(), StrCat(split_, " record ", index, " (", r.source,
                                              ") is a crop, not a whole image: evaluate a test split"));
    }
    return {r.source, std::move(r.image), std::move(r.target), static_cast<double>(r.count)};
  }
  std::string Describe() const override {
    return StrCat("shard set ", set_.dir().string(), " (", split_, " split, ", size_, " images)");
  }
  std::map<std::string, std::string> Tags(const EvalSample& s) const override { return tags_.Of(s); }

 private:
  ShardSet set_;
  std::string split_;
  BenchmarkTags tags_;
  int64_t size_ = 0;
};

// Each head's unit in the 8 x 8 cell of its pixel: the ground truth at 1/8
// when only the points are known (floor(h/8) x floor(w/8), as SumBlocks8).
cv::Mat PointMap(const std::vector<Point>& points, int width, int height) {
  cv::Mat map = cv::Mat::zeros(height / 8, width / 8, CV_32F);
  for (const Point& p : points) {
    if (!(p[0] >= 0 && p[1] >= 0 && p[0] < width && p[1] < height)) continue;  // NaN too
    const int col = static_cast<int>(p[0]) / 8, row = static_cast<int>(p[1]) / 8;
    if (row < map.rows && col < map.cols) map.at<float>(row, col) += 1.0f;
  }
  return map;
}

// What BenchmarkTags reads: the dataset, its root and the split scored.
nlohmann::json TagSource(const EvaluateOptions& o) {
  return {{"source", {{"dataset", Name(o.dataset)}, {"root", o.root}, {"eval_split", o.split}}}};
}

class DatasetSource : public EvalSource {
 public:
  explicit DatasetSource(const EvaluateOptions& o)
      : disc_(Discover(o)), limits_(o.size.Resolve(o.dataset)), tags_(TagSource(o)), o_(o) {}
  int64_t size() const override { return static_cast<int64_t>(disc_.samples.size()); }
  EvalSample Load(int64_t index) const override {
    const Sample& s = disc_.samples[static_cast<size_t>(index)];
    EvalSample out;
    out.name = s.image.filename().string();
    const cv::Mat rgb = ReadImageRGB(s.image.string());
    const std::vector<Point> points = ReadHeads(s);
    out.count = static_cast<double>(points.size());
    const Rescale r = RescaleFor(rgb.cols, rgb.rows, limits_, s.image.string());
    out.rgb = RescaleImage(rgb, r);
    if (!r.identity() || !fs::exists(s.density)) {
      out.truth_map = PointMap(RescalePoints(points, r), out.rgb.cols, out.rgb.rows);
      out.has_map = false;
      return out;
    }
    const std::string density_path = s.density.string();
    cv::Mat density;
    {
      h5::Lock lock;  // HDF5 is not thread-safe; held for the file's whole life
      const h5::Hid f = h5::OpenRead(density_path);
      CheckDensityFormat(f.get(), density_path);
      density = h5::ReadMat2f(f.get(), "density", density_path);
    }
    if (density.rows != out.rgb.rows || density.cols != out.rgb.cols) {
      throw Error(density_path, StrCat("density map is ", density.cols, "x", density.rows, " but the image is ",
                                       out.rgb.cols, "x", out.rgb.rows, " (stale: rerun gt_gen)"));
    }
    out.truth_map = SumBlocks8(density);
    return out;
  }
  std::string Describe() const override {
    const std::string what = o_.dataset == DatasetKind::kShanghaiTech ? StrCat("part ", o_.part) : Name(o_.dataset);
    return StrCat("dataset ", disc_.part_dir.string(), " (", what, ", ", o_.split, ", ", size(), " images",
                  limits_.active() ? StrCat(", rescaled ", csr::Describe(limits_)) : std::string(), ")");
  }
  std::map<std::string, std::string> Tags(const EvalSample& s) const override { return tags_.Of(s); }

 private:
  static Discovery Discover(const EvaluateOptions& o) {
    Discovery d = DiscoverDataset({o.dataset, o.root, o.part, o.split, o.val_list, o.fold});
    RequireLabels(d, o.dataset, "--split");
    if (!d.unannotated_images.empty()) {
      log::Warn(d.unannotated_images.size(), " image(s) without annotation left out, e.g. ",
                d.unannotated_images.front().string());
    }
    return d;
  }
  Discovery disc_;
  SizeLimits limits_;
  BenchmarkTags tags_;
  EvaluateOptions o_;
};

// ---- Output -------------------------------------------------------------------------

std::string Fmt(double v, const char* f = "%.4f") {
  if (std::isnan(v)) return "";  // not defined for this image (no density map)
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// Keeps the `n` images with the largest absolute error, with their heatmaps
// rendered small enough for the report (rendered only when they enter).
class WorstImages {
 public:
  WorstImages(int n, double alpha) : n_(static_cast<size_t>(std::max(0, n))), alpha_(alpha) {}
  void Offer(const EvalSample& s, const cv::Mat& density, const ImageMetrics& m) {
    const double err = std::abs(m.error());
    if (n_ == 0 || (items_.size() == n_ && err <= std::abs(items_.back().predicted - items_.back().truth))) return;
    cv::Mat bgr = RenderHeatmap(s.rgb, density, m.predicted, alpha_);
    const double scale = 480.0 / std::max(bgr.cols, bgr.rows);
    if (scale < 1) cv::resize(bgr, bgr, cv::Size(), scale, scale, cv::INTER_AREA);
    items_.push_back({s.name, m.truth, m.predicted, EncodePng(bgr)});
    std::stable_sort(items_.begin(), items_.end(), [](const ReportImage& a, const ReportImage& b) {
      return std::abs(a.predicted - a.truth) > std::abs(b.predicted - b.truth);
    });
    if (items_.size() > n_) items_.pop_back();
  }
  const std::vector<ReportImage>& items() const { return items_; }

 private:
  size_t n_;
  double alpha_;
  std::vector<ReportImage> items_;
};

std::vector<std::pair<std::string, std::string>> SummaryRows(const EvaluateResult& r) {
  const MetricsSummary& s = r.summary;
  std::vector<std::pair<std::string, std::string>> rows = {
      {"images", StrCat(s.images)},
      {"MAE", Fmt(s.mae, "%.3f")},
      {"RMSE (the papers' MSE)", Fmt(s.rmse, "%.3f")},
      {"NAE", StrCat(Fmt(s.nae, "%.4f"),
                     s.nae_images < s.images ? StrCat(" (", s.nae_images, " images with people)") : std::string())},
      {"mean error (bias)", Fmt(s.mean_error, "%+.3f")}};
  for (int l = 0; l < kGameLevels; ++l) rows.push_back({StrCat("GAME(", l, ")"), Fmt(s.game[l], "%.3f")});
  if (s.map_images == 0) {
    rows.push_back({"PSNR, SSIM (1/8 maps)", "n/a: no ground-truth density map (gt_gen, not rescaled)"});
  } else {
    const std::string part = s.map_images < s.images ? StrCat(" (", s.map_images, " images with a map)") : "";
    rows.push_back({"PSNR (1/8 maps)", Fmt(s.psnr, "%.2f") + " dB" + part});
    rows.push_back({"SSIM (1/8 maps)", Fmt(s.ssim, "%.4f") + part});
  }
  if (r.failed > 0) rows.push_back({"failed images", StrCat(r.failed)});
  return rows;
}

void PrintSummary(const EvaluateResult& r) {
  for (const auto& [k, v] : SummaryRows(r)) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-24s %s\n", k.c_str(), v.c_str());
    std::cout << buf;
  }
  if (!r.groups.empty()) std::cout << "\nby group                          images      MAE     RMSE      NAE\n";
  for (const GroupSummary& g : r.groups) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-14s %-18s %7lld %8.3f %8.3f %8.4f\n", g.attribute.c_str(), g.value.c_str(),
                  static_cast<long long>(g.summary.images), g.summary.mae, g.summary.rmse, g.summary.nae);
    std::cout << buf;
  }
  std::cout << std::flush;
}

ReportData BuildReport(const EvaluateResult& r, const WorstImages& worst, const EvaluateOptions& o,
                       const std::string& source, const std::string& model) {
  ReportData d;
  d.title = "CSRNet evaluation: " + fs::path(o.model.weights).filename().string();
  d.context = {
      {"weights", o.model.weights}, {"data", source}, {"model", model}, {"time", Fmt(r.seconds, "%.1f") + " s"}};
  d.summary = SummaryRows(r);
  for (const GroupSummary& g : r.groups) {
    d.summary.push_back(
        {StrCat(g.attribute, " ", g.value), StrCat("MAE ", Fmt(g.summary.mae, "%.3f"), ", RMSE ",
                                                   Fmt(g.summary.rmse, "%.3f"), " (", g.summary.images, " images)")});
  }
  for (const EvalRow& row : r.rows) {
    d.names.push_back(row.name);
    d.truth.push_back(row.metrics.truth);
    d.predicted.push_back(row.metrics.predicted);
  }
  d.worst = worst.items();
  const fs::path log = fs::path(o.model.weights).parent_path() / "train_log.jsonl";
  if (fs::is_regular_file(log)) {
    try {
      ReadTrainingLog(log.string(), &d.loss_curves, &d.error_curves);
      d.context.push_back({"training log", log.string()});
    } catch (const Error& e) {
      log::Warn(e.what(), " (report without training curves)");
    }
  }
  return d;
}

}  // namespace

void EvaluateOptions::Check() const {
  model.Check();
  CheckThat(root.empty() || shards.empty(), "--root", root, "give either a shard set or --root, not both");
  CheckThat(part == "A" || part == "B", "--part", part, "expected A or B");
  CheckRange("--fold", fold, 0, 5, "0 = none");
  if (!root.empty()) size.Resolve(dataset).Check();
  CheckRange("--worst", worst, 0, 100000);
  CheckRange("--alpha", alpha, 0.0, 1.0);
}

namespace {

std::unique_ptr<EvalSource> OpenSource(const EvaluateOptions& o) {
  if (!o.root.empty() && !o.shards.empty()) {
    throw UsageError("--root", "give either a shard set or --root, not both");
  }
  if (!o.root.empty()) return OpenDatasetSource(o);
  if (o.shards.empty()) throw UsageError("evaluate", "no test set: give a shard set folder or --root (see --help)");
  return OpenShardSource(o.shards, o.split);
}

}  // namespace

std::unique_ptr<EvalSource> OpenShardSource(const std::string& path, const std::string& split) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "shards/test/"
  if (fs::exists(p / kManifestName)) return std::make_unique<ShardSource>(p, split);
  if (p.has_parent_path() && fs::exists(p.parent_path() / kManifestName) && fs::is_directory(p)) {
    return std::make_unique<ShardSource>(p.parent_path(), p.filename().string());
  }
  if (!fs::exists(p)) throw Error(path, "no such shard set folder");
  throw Error(path, StrCat("not a shard set: no ", kManifestName,
                           " here or in the parent folder "
                           "(an unfinished crop_shards run?)"));
}

std::unique_ptr<EvalSource> OpenDatasetSource(const EvaluateOptions& o) {
  if (o.split != "train" && o.split != "val" && o.split != "test" && o.split != "all") {
    throw UsageError("--split", StrCat("expected train, val, test or all with --root, got '", o.split, "'"));
  }
  return std::make_unique<DatasetSource>(o);
}

void RegisterEvaluateOptions(ArgParser& p, EvaluateOptions* o) {
  RegisterModelSettings(p, &o->model);
  p.Add("shards", &o->shards, "Shard set folder, or its split subfolder such as shards/test (or the argument)");
  p.Add("root", &o->root,
        "Dataset root: evaluate from its images and annotations (and gt_gen's density maps where they exist)");
  AddDatasetOption(p, "dataset", &o->dataset, "With --root: the dataset layout (docs/datasets.md)");
  p.AddChoice("part", &o->part, {"A", "B"}, "With --root, ShanghaiTech: dataset part");
  p.Add("val-list", &o->val_list, "With --root, qnrf: file naming the Train/ images that form the val split");
  p.Add("fold", &o->fold, "With --root, ucf50: the cross-validation fold 1..5");
  o->size.Register(p);
  p.Add("split", &o->split, "Split to score: test, train (shards: any split name; --root: also val, all)");
  p.Add("csv", &o->csv,
        "Per-image CSV: name, size, annotation count, prediction, error, GT density sum, GAME, PSNR, SSIM");
  p.Add("json", &o->json, "JSON summary: MAE, RMSE, NAE, GAME(0..3), PSNR, SSIM and the settings");
  p.Add("report", &o->report, "Self-contained HTML report (tables, plots, worst images with heatmaps)");
  p.Add("worst", &o->worst, "Images shown with their heatmaps in the report");
  p.Add("alpha", &o->alpha, "Heatmap opacity in the report (0..1)");
}

std::string EvaluationCsv(const EvaluateResult& r) {
  std::ostringstream s;
  s << "image,width,height,count,predicted,error,abs_error,density_sum,game0,game1,game2,game3,psnr,ssim\n";
  for (const EvalRow& row : r.rows) {
    const ImageMetrics& m = row.metrics;
    s << CsvField(row.name) << ',' << row.width << ',' << row.height << ',' << Fmt(m.truth, "%.0f") << ','
      << Fmt(m.predicted, "%.6f") << ',' << Fmt(m.error(), "%.6f") << ',' << Fmt(std::abs(m.error()), "%.6f") << ','
      << Fmt(m.density_sum, "%.6f");
    for (double g : m.game) s << ',' << Fmt(g, "%.6f");
    s << ',' << Fmt(m.psnr, "%.4f") << ',' << Fmt(m.ssim, "%.6f") << '\n';
  }
  return s.str();
}

nlohmann::json EvaluationJson(const EvaluateResult& r, const nlohmann::json& context) {
  const MetricsSummary& s = r.summary;
  nlohmann::json j = context;
  j["images"] = s.images;
  j["failed"] = r.failed;
  j["mae"] = s.mae;
  j["rmse"] = s.rmse;
  j["nae"] = s.nae;
  j["nae_images"] = s.nae_images;
  j["mean_error"] = s.mean_error;
  j["game"] = std::vector<double>(s.game.begin(), s.game.end());
  j["psnr"] = s.psnr;
  j["ssim"] = s.ssim;  // null when no image had a density map
  j["map_images"] = s.map_images;
  if (!r.groups.empty()) {
    nlohmann::json groups = nlohmann::json::array();
    for (const GroupSummary& g : r.groups) {
      groups.push_back({{"attribute", g.attribute},
                        {"value", g.value},
                        {"images", g.summary.images},
                        {"mae", g.summary.mae},
                        {"rmse", g.summary.rmse},
                        {"nae", g.summary.nae}});
    }
    j["groups"] = groups;
  }
  j["seconds"] = r.seconds;
  j["images_per_second"] = r.seconds > 0 ? static_cast<double>(s.images) / r.seconds : 0.0;
  return j;
}

namespace {

// The settings beside the figures in the JSON summary; the precision is the
// one the engine runs in (--precision auto resolved, RecordedPrecision).
nlohmann::json EvaluationContext(const EvaluateOptions& o, const std::string& data, const std::string& model) {
  const ResolvedPrecision precision = RecordedPrecision(o.model.weights, o.model.precision);
  nlohmann::json context = {{"weights", o.model.weights},
                            {"data", data},
                            {"model", model},
                            {"precision", PrecisionName(precision.precision)},
                            {"tile", o.model.tile}};
  if (precision.by_auto) context["precision_chosen_by"] = "auto";
  return context;
}

}  // namespace

int RunEvaluate(int argc, const char* const* argv) {
  return RunTool("evaluate", [&] {
    EvaluateOptions o;
    std::vector<std::string> positional;
    ArgParser parser("evaluate",
                     "--weights FILE SHARDS[/test] [options]   or   --weights FILE --root DIR --part A "
                     "--split test [options]",
                     "Scores CSRNet weights on a test set: per-image counts and errors (--csv), MAE, RMSE, NAE, "
                     "GAME(0..3),\nPSNR and SSIM of the 1/8 density maps (printed, --json), and an HTML report "
                     "(--report).");
    RegisterEvaluateOptions(parser, &o);
    parser.AddPositional("SHARDS", &positional, "Shard set folder or its test/ subfolder");
    if (!parser.Parse(argc, argv)) return 0;
    UseInferenceHeap();
    if (positional.size() > 1) throw UsageError("evaluate", "give one shard set");
    if (!positional.empty()) {
      if (!o.shards.empty()) throw UsageError("--shards", "given twice (option and argument)");
      o.shards = positional[0];
    }
    o.Check();
    const std::unique_ptr<EvalSource> source = OpenSource(o);
    for (const std::string* out : {&o.csv, &o.json, &o.report}) {
      if (!out->empty()) CheckWritableFile(*out);
    }
    if (source->size() == 0) throw Error(source->Describe(), "no images to evaluate");
    Predictor predictor(o.model);
    log::Info(source->Describe(), "; ", predictor.Describe());

    EvaluateResult result;
    WorstImages worst(o.worst, o.alpha);
    std::vector<ImageMetrics> metrics;
    std::vector<std::map<std::string, std::string>> tags;
    const auto start = std::chrono::steady_clock::now();
    {
      Progress progress("evaluate", source->size());
      for (int64_t i = 0; i < source->size(); ++i) {
        try {
          const EvalSample s = source->Load(i);
          const cv::Mat density = predictor.Density(s.rgb);
          if (!std::isfinite(cv::sum(density)[0])) {
            throw Error(s.name, "the network's count is not finite (weights too large for this image?)");
          }
          ImageMetrics m = MeasureImage(density, s.truth_map, s.count);
          if (!s.has_map) m.psnr = m.ssim = std::numeric_limits<double>::quiet_NaN();
          result.rows.push_back({s.name, s.rgb.cols, s.rgb.rows, m});
          metrics.push_back(m);
          tags.push_back(source->Tags(s));
          worst.Offer(s, density, m);
        } catch (const std::exception& e) {  // report it, score the others
          log::Error(e.what());
          ++result.failed;
        }
        progress.Tick();
      }
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // No table when nothing was scored: a table of zeros reads as MAE 0.000.
    if (result.rows.empty()) {
      throw Error(source->Describe(),
                  StrCat("none of the ", result.failed, " image(s) could be evaluated (errors above)"));
    }
    result.summary = Summarize(metrics);
    result.groups = SummarizeGroups(metrics, tags);
    PrintSummary(result);

    const nlohmann::json context = EvaluationContext(o, source->Describe(), predictor.Describe());
    if (!o.csv.empty()) WriteTextFileAtomic(o.csv, EvaluationCsv(result));
    if (!o.json.empty()) WriteTextFileAtomic(o.json, EvaluationJson(result, context).dump(2) + "\n");
    if (!o.report.empty())
      WriteReport(o.report, BuildReport(result, worst, o, source->Describe(), predictor.Describe()));
    if (result.failed > 0) {
      log::Error(result.failed, " image(s) failed; the summary covers the other ", result.rows.size());
      return 1;
    }
    return 0;
  });
}

}  // namespace csr
