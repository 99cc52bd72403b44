// crop_shards --inspect and --export: statistics of a finished shard set
// (from the manifest and the shards' indexes, no pixels read) and a look at
// one record as PNG files.
#include <algorithm>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/shards/shards.h"
#include "preprocess/crop_shards.h"

namespace csr {
namespace {

std::string Megabytes(uint64_t bytes) { return StrCat(std::fixed, std::setprecision(1), bytes / 1e6, " MB"); }

// Value at fraction q of a sorted list (nearest rank).
int64_t Quantile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

std::string JsonText(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

void PrintSplit(const ShardSet& set, const std::string& split, std::ostream& out) {
  const nlohmann::json& m = set.manifest()["splits"][split];
  const int64_t n = set.size(split);
  out << split << ": " << n << " records from " << m.value("images", int64_t{0}) << " images ("
      << m.value("skipped_images", int64_t{0}) << " skipped), " << m["shards"].size() << " shards, "
      << Megabytes(m.value("bytes", uint64_t{0})) << ", target " << m.value("target", std::string("?")) << "\n";
  if (n == 0) return;
  std::map<std::pair<int, int>, int64_t> sizes;
  std::vector<int64_t> counts;
  int64_t quarters = 0, random = 0, whole = 0;
  int wmin = INT32_MAX, wmax = 0, hmin = INT32_MAX, hmax = 0;
  double wsum = 0, hsum = 0, count_sum = 0, dsum = 0, abs_diff = 0, max_diff = 0;
  for (int64_t i = 0; i < n; ++i) {
    const RecordInfo r = set.Info(split, i);
    ++sizes[{r.width, r.height}];
    counts.push_back(r.count);
    (r.crop < 0 ? whole : r.crop < 4 ? quarters : random)++;
    wmin = std::min(wmin, r.width), wmax = std::max(wmax, r.width), wsum += r.width;
    hmin = std::min(hmin, r.height), hmax = std::max(hmax, r.height), hsum += r.height;
    count_sum += static_cast<double>(r.count);
    dsum += r.density_sum;
    const double d = std::abs(r.density_sum - static_cast<double>(r.count));
    abs_diff += d;
    max_diff = std::max(max_diff, d);
  }
  std::sort(counts.begin(), counts.end());
  std::vector<std::pair<int64_t, std::pair<int, int>>> common;
  for (const auto& [size, k] : sizes) common.push_back({-k, size});
  std::sort(common.begin(), common.end());
  out << std::fixed << std::setprecision(1);
  out << "  crops: " << quarters << " quarter, " << random << " random, " << whole << " whole images\n";
  out << "  sizes: " << sizes.size() << " distinct; width " << wmin << ".." << wmax << " (mean " << wsum / n
      << "), height " << hmin << ".." << hmax << " (mean " << hsum / n << "); most common:";
  for (size_t k = 0; k < std::min<size_t>(5, common.size()); ++k) {
    out << " " << common[k].second.first << "x" << common[k].second.second << " (" << -common[k].first << ")";
  }
  out << "\n  count per record: min " << counts.front() << ", p25 " << Quantile(counts, 0.25) << ", median "
      << Quantile(counts, 0.5) << ", p75 " << Quantile(counts, 0.75) << ", max " << counts.back() << ", mean "
      << count_sum / n << ", total " << static_cast<int64_t>(count_sum) << "\n";
  out << "  density sum: total " << dsum << "; |density_sum - count| per record: mean " << std::setprecision(3)
      << abs_diff / n << ", max " << max_diff << "\n";
  out.unsetf(std::ios::floatfield);
}

void WritePngAtomic(const fs::path& path, const cv::Mat& bgr) {
  std::vector<uchar> png;
  if (!cv::imencode(".png", bgr, png)) throw Error(path.string(), "cannot encode PNG");
  AtomicFile file(path);
  {
    std::ofstream f(file.temp_path(), std::ios::binary);
    f.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    f.flush();
    if (!f) throw Error(path.string(), "write failed (disk full?)");
  }
  file.Commit();
}

}  // namespace

void InspectShards(const std::string& dir, bool verify, std::ostream& out) {
  const ShardSet set(dir);
  const nlohmann::json& m = set.manifest();
  const nlohmann::json src = m.value("source", nlohmann::json::object());
  const nlohmann::json settings = m.value("settings", nlohmann::json::object());
  const nlohmann::json gt = m.value("ground_truth", nlohmann::json::object());
  const nlohmann::json totals = m.value("totals", nlohmann::json::object());
  out << "shard set " << dir << " (format " << m.value("format_version", 0) << ", "
      << m.value("created_by", std::string("unknown tool")) << ")\n";
  out << "source: " << JsonText(src.value("root", nlohmann::json("?")));
  if (src.contains("dataset")) {  // the layouts other than ShanghaiTech
    out << " (" << JsonText(src["dataset"]) << ", test split = its "
        << JsonText(src.value("eval_split", nlohmann::json("?")))
        << (src.contains("fold") ? " fold " + JsonText(src["fold"]) : std::string()) << ")";
  } else {
    out << " part " << JsonText(src.value("part", nlohmann::json("?")));
  }
  out << "; settings " << settings.dump() << "\n";
  out << "ground truth:";
  for (const char* key : {"mode", "kernel", "sigma_rule", "border", "tool_version"}) {
    out << " " << key << "=" << JsonText(gt.value(key, nlohmann::json("unknown"))) << ";";
  }
  out << " maps without settings=" << gt.value("maps_without_settings", 0) << "\n";
  int64_t records = 0;
  for (const auto& split : set.splits()) records += set.size(split);
  out << "totals: " << records << " records, " << totals.value("shards", 0) << " shards, "
      << Megabytes(totals.value("bytes", uint64_t{0})) << ", " << totals.value("images", 0) << " images ("
      << totals.value("skipped_images", 0) << " skipped)\n";
  for (const auto& split : set.splits()) PrintSplit(set, split, out);
  if (verify) {
    set.Verify();
    out << "checksums: every shard matches manifest.json\n";
  }
}

std::vector<std::string> ExportRecord(const std::string& dir, const std::string& split, int64_t index,
                                      const std::string& out_dir) {
  const ShardSet set(dir);
  const ShardRecord r = set.Read(split, index);
  MakeDirs(out_dir);
  cv::Mat image;
  cv::cvtColor(r.image, image, cv::COLOR_RGB2BGR);
  double max_value = 0;
  cv::minMaxLoc(r.target, nullptr, &max_value);
  cv::Mat scaled;
  r.target.convertTo(scaled, CV_8U, max_value > 0 ? 255.0 / max_value : 0.0);
  cv::Mat heat;
  cv::applyColorMap(scaled, heat, cv::COLORMAP_JET);
  cv::resize(heat, heat, image.size(), 0, 0, cv::INTER_NEAREST);
  cv::Mat overlay;
  cv::addWeighted(image, 0.5, heat, 0.5, 0.0, overlay);
  const std::string stem = StrCat(split, "-", index);
  const std::vector<std::pair<std::string, cv::Mat>> outputs = {
      {stem + "-image.png", image}, {stem + "-target.png", heat}, {stem + "-overlay.png", overlay}};
  std::vector<std::string> paths;
  for (const auto& [name, mat] : outputs) {
    const fs::path p = fs::path(out_dir) / name;
    WritePngAtomic(p, mat);
    paths.push_back(p.string());
  }
  log::Info(split, " record ", index, ": ", r.source, " box [", r.box[0], ", ", r.box[1], ", ", r.box[2], ", ",
            r.box[3], "], count ", r.count, ", density sum ", r.density_sum, ", target sum ", cv::sum(r.target)[0],
            ", target max ", max_value);
  return paths;
}

}  // namespace csr
