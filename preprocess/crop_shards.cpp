#include "preprocess/crop_shards.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_pipeline.h>

#include "common/base/cli.h"
#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/base/random.h"
#include "common/base/tsan.h"
#include "common/io/dataset.h"
#include "common/io/density_map.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "common/io/mat_io.h"
#include "common/shards/shards.h"

namespace csr {

// ================================================================ geometry

CropBox CropSize(int width, int height) {
  CropBox c;
  c.w = (width / 2) / 8 * 8;
  c.h = (height / 2) / 8 * 8;
  return c;
}

uint64_t ImageSeed(int64_t seed, const std::string& split, const std::string& image_name) {
  return SplitMix64(static_cast<uint64_t>(seed) ^ SplitMix64(Fnv1a(split + '/' + image_name)));
}

std::vector<CropBox> TrainCrops(int width, int height, int random_crops, uint64_t image_seed) {
  const CropBox size = CropSize(width, height);
  if (size.w < 8 || size.h < 8) return {};
  const int w = size.w, h = size.h;
  std::vector<CropBox> out = {{0, 0, w, h}, {width - w, 0, w, h}, {0, height - h, w, h}, {width - w, height - h, w, h}};
  std::mt19937_64 rng(image_seed);
  for (int i = 0; i < random_crops; ++i) {
    const int x = static_cast<int>(UniformUpTo(rng, static_cast<uint64_t>(width - w)));
    const int y = static_cast<int>(UniformUpTo(rng, static_cast<uint64_t>(height - h)));
    out.push_back({x, y, w, h});
  }
  return out;
}

// ================================================================ targets

const char* Name(TargetRule target) { return target == TargetRule::kCubic ? "cubic" : "sum8"; }

void CropShardsOptions::Check() const {
  CheckThat(part == "A" || part == "B", "--part", part, "expected A or B");
  CheckRange("--threads", threads, 0, 1024, "0 = all cores");
  CheckRange("--random-crops", random_crops, 0, 1000);
  CheckRange("--records-per-shard", records_per_shard, 1, 1000000);
  CheckRange("--compress", compress, 0, 9, "a zlib level");
  CheckThat(!out.empty(), "--out", "\"\"", "must name a folder");
  CheckThat(eval_split.empty() || eval_split == "val" || eval_split == "test", "--eval-split", eval_split,
            "expected val or test");
  CheckRange("--fold", fold, 0, 5, "0 = none");
  if (dataset == DatasetKind::kUcf50) CheckRange("--fold", fold, 1, 5, "UCF_CC_50 is cross-validated");
  ResolveDensity().Check();
  const SizeLimits limits = ResolveSize();
  limits.Check();
  if (limits.active() && density_source == DensitySource::kMaps) {
    throw UsageError("--density", StrCat("maps: gt_gen's maps are at the source resolution, and images are rescaled (",
                                         Describe(limits),
                                         "); use --density auto or annotations, or --min-side 0 "
                                         "--max-side 0 --max-short-side 0"));
  }
}

DensityOptions CropShardsOptions::ResolveDensity() const { return density.Resolve(dataset, part); }

SizeLimits CropShardsOptions::ResolveSize() const { return size.Resolve(dataset); }

namespace {

template <typename T>
double SumBox(const cv::Mat& density, const cv::Rect& box) {
  double total = 0.0;
  for (int y = box.y; y < box.y + box.height; ++y) {
    const T* p = density.ptr<T>(y) + box.x;
    double row = 0.0;
    for (int x = 0; x < box.width; ++x) row += p[x];
    total += row;
  }
  return total;
}

void CheckDensity(const cv::Mat& density, const cv::Rect& box) {
  CSR_ASSERT(density.channels() == 1 && (density.depth() == CV_32F || density.depth() == CV_64F),
             "density map must be one float channel, got type ", density.type());
  CSR_ASSERT((box & cv::Rect(0, 0, density.cols, density.rows)) == box, "crop box outside the density map");
}

}  // namespace

cv::Mat TargetCubic(const cv::Mat& density, const cv::Rect& box) {
  CheckDensity(density, box);
  // A standalone copy: the crop is a fresh array in the original too, and
  // resize must not see pixels outside the box.
  const cv::Mat crop = density(box).clone();
  cv::Mat small;
  cv::resize(crop, small, cv::Size(box.width / 8, box.height / 8), 0, 0, cv::INTER_CUBIC);
  small *= 64.0;
  if (small.depth() != CV_32F) small.convertTo(small, CV_32F);
  return small;
}

double BoxSum(const cv::Mat& density, const cv::Rect& box) {
  CheckDensity(density, box);
  return density.depth() == CV_32F ? SumBox<float>(density, box) : SumBox<double>(density, box);
}

int64_t CountInBox(const HeadPixels& heads, const cv::Rect& box) {
  int64_t n = 0;
  for (const HeadPixel& p : heads.pixels) {
    if (box.contains(cv::Point(p.col, p.row))) n += p.multiplicity;
  }
  return n;
}

// ================================================================ the build

namespace {

const char* const kGtKeys[] = {"mode", "kernel", "sigma_rule", "border", "tool_version"};

// What gt_gen recorded with a density map; empty strings when absent (maps
// written by the original Python script carry only `density`).
struct GtInfo {
  std::map<std::string, std::string> settings;
  int64_t annotation_count = -1;
  bool has_sum = false;  // gt_gen's density_sum attribute
  double density_sum = 0.0;
  int64_t crc32 = -1;  // gt_gen's density_crc32 attribute; -1 when absent (older gt_gen, Python maps)
};

struct Job {
  const Sample* sample = nullptr;
  bool train = true;
  cv::Mat density;
  GtInfo gt;
  std::vector<Point> points;  // the annotated heads, as stored
  bool render = false;        // no gt_gen map used: the density is made in memory
  // Filled by the parallel stage.
  EncodedImage encoded;     // the image once and its records (none when skipped)
  int64_t annotations = 0;  // inside the image
  bool skipped = false;
  int width = 0, height = 0;
};

struct Summary {
  int64_t images[2] = {0, 0};
  int64_t skipped[2] = {0, 0};
  int64_t annotations[2] = {0, 0};
  int64_t pixels = 0;
  std::map<std::string, std::set<std::string>> gt_values;
  int64_t maps_without_settings = 0;
  int64_t stale_maps = 0;
};

std::string GtGenCommand(const CropShardsOptions& o) { return StrCat("gt_gen --root ", o.root, " --part ", o.part); }

void ReadDensityMap(const Sample& s, Job* job) {
  const std::string path = s.density.string();
  h5::Lock lock;  // before the file: its destructor calls HDF5, also while unwinding
  const h5::Hid file = h5::OpenRead(path);
  const hid_t f = file.get();
  {
    CheckDensityFormat(f, path);
    job->density = h5::ReadMat2f(f, "density", path);
    for (const char* key : kGtKeys) {
      if (h5::HasAttr(f, key)) job->gt.settings[key] = h5::GetAttrString(f, key, path);
    }
    if (h5::HasAttr(f, "annotation_count")) job->gt.annotation_count = h5::GetAttrInt(f, "annotation_count", path);
    job->gt.has_sum = h5::HasAttr(f, "density_sum");
    if (job->gt.has_sum) job->gt.density_sum = h5::GetAttrDouble(f, "density_sum", path);
    if (h5::HasAttr(f, kDensityCrcAttr)) job->gt.crc32 = h5::GetAttrInt(f, kDensityCrcAttr, path);
  }
}

// A density map is nothing but non-negative Gaussians: every value finite and
// >= 0 (scipy's and our filters only add positive weights; the tolerance is
// for float rounding), summing to at most the head count (mass is lost at the
// borders, never gained). Maps from gt_gen also carry their sum and CRC-32,
// which catch corruption that stays plausible. Throws naming the .h5 file.
void CheckDensityValues(const Job& job, const std::string& fix) {
  const std::string path = job.sample->density.string();
  const cv::Mat& d = job.density;
  if (!cv::checkRange(d)) throw Error(path, "corrupt density map: NaN or infinite values; " + fix);
  double lo = 0, hi = 0;
  cv::minMaxLoc(d, &lo, &hi);
  const double sum = cv::sum(d)[0];
  if (lo < -1e-6) throw Error(path, StrCat("corrupt density map: a value of ", lo, " (densities are >= 0); ", fix));
  if (job.gt.crc32 >= 0 && d.type() == CV_32F && static_cast<int64_t>(DensityCrc32(d)) != job.gt.crc32) {
    throw Error(path, StrCat("corrupt density map: CRC-32 of the density differs from the one gt_gen stored; ", fix));
  }
  if (job.gt.has_sum && std::abs(sum - job.gt.density_sum) > 1e-6 * std::max(1.0, std::abs(job.gt.density_sum))) {
    throw Error(path, StrCat("corrupt density map: it sums to ", sum, " but gt_gen stored density_sum ",
                             job.gt.density_sum, "; ", fix));
  }
  const double heads =
      static_cast<double>(std::max<int64_t>(job.gt.annotation_count, static_cast<int64_t>(job.points.size())));
  if (sum > heads * (1 + 1e-4) + 1e-3) {
    throw Error(path,
                StrCat("corrupt density map: it sums to ", sum, ", more than the ", heads, " annotated heads; ", fix));
  }
}

// Serial stage: the HDF5 and annotation reads. Rescaled images take their
// density from the rescaled points: gt_gen's maps are at the source size.
std::unique_ptr<Job> ReadInputs(const Sample& s, const CropShardsOptions& o, const SizeLimits& limits) {
  auto job = std::make_unique<Job>();
  job->sample = &s;
  job->train = s.split == "train";
  job->render = o.density_source == DensitySource::kAnnotations || limits.active() || !fs::exists(s.density);
  if (!job->render) ReadDensityMap(s, job.get());
  job->points = ReadHeads(s);
  return job;
}

// What gt_gen records with a map, for a density made here instead.
std::map<std::string, std::string> InMemorySettings(const DensityOptions& d) {
  return {{"mode", Name(d.mode)},
          {"kernel", Name(d.kernel)},
          {"sigma_rule", d.kernel == KernelRule::kFixed ? StrCat("fixed sigma=", d.sigma)
                                                        : StrCat("adaptive beta=", d.beta, " k=", d.neighbors)},
          {"border", Name(d.border)},
          {"tool_version", StrCat("csrnet-cpp crop_shards ", CSR_VERSION, " (in memory)")}};
}

// Parallel stage: decode, check, crop, targets, encode.
void MakeRecords(Job& job, const CropShardsOptions& o, const DensityOptions& dopt, const SizeLimits& limits) {
  const Sample& s = *job.sample;
  cv::Mat image = ReadImageRGB(s.image.string());
  const Rescale rescale = RescaleFor(image.cols, image.rows, limits, s.image.string());
  image = RescaleImage(image, rescale);
  job.width = image.cols;
  job.height = image.rows;
  const HeadPixels heads =
      ToHeadPixels(RescalePoints(job.points, rescale), image.cols, image.rows, s.annotation.string());
  if (job.render) {
    // The same rendering as gt_gen's, so both routes give identical records.
    job.density = RenderDensity(heads.pixels, HeadSigmas(heads.pixels, image.cols, image.rows, dopt), image.cols,
                                image.rows, dopt);
    job.gt.settings = InMemorySettings(dopt);
  } else {
    if (job.density.size() != image.size()) {
      throw Error(s.density.string(), StrCat("density map is ", job.density.cols, "x", job.density.rows,
                                             " but its image ", s.image.filename().string(), " is ", image.cols, "x",
                                             image.rows, "; regenerate it with `", GtGenCommand(o), " --overwrite`"));
    }
    CheckDensityValues(job, StrCat("regenerate it with `", GtGenCommand(o), " --overwrite`"));
  }
  job.annotations = heads.inside;
  std::vector<CropBox> boxes;
  if (job.train) {
    boxes = TrainCrops(image.cols, image.rows, o.random_crops, ImageSeed(o.seed, s.split, s.image.filename().string()));
  } else if (image.cols >= 8 && image.rows >= 8) {
    boxes.push_back({0, 0, image.cols, image.rows});
  }
  job.skipped = boxes.empty();
  std::vector<ShardRecord> records;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const cv::Rect box = boxes[i].rect();
    ShardRecord r;
    r.image = image(box);  // a view: EncodeImage stores the image once and the box
    const bool cubic = job.train && o.target == TargetRule::kCubic;
    double covered = 0.0;
    r.target = cubic ? TargetCubic(job.density, box) : SumBlocks8(job.density, box, &covered);
    r.source = s.image.filename().string();
    r.box = {box.x, box.y, box.width, box.height};
    r.count = CountInBox(heads, box);
    const bool aligned = box.width % 8 == 0 && box.height % 8 == 0;
    r.density_sum = !cubic && aligned ? covered : BoxSum(job.density, box);
    r.crop = job.train ? static_cast<int>(i) : -1;
    r.scale = {rescale.sx, rescale.sy};
    records.push_back(std::move(r));
  }
  if (!records.empty()) job.encoded = EncodeImage(image, records, o.compress);
  job.density.release();
}

// The eval split stored as the set's test split: --eval-split, or the
// labelled one (NWPU-Crowd's test labels are withheld: val).
std::string EvalSplit(const CropShardsOptions& o) {
  if (!o.eval_split.empty()) return o.eval_split;
  return o.dataset == DatasetKind::kNwpu ? "val" : "test";
}

// The dataset keys of the manifest's `source`, for the layouts other than
// ShanghaiTech's (whose manifests stay as they were).
nlohmann::json DatasetSource(const CropShardsOptions& o) {
  nlohmann::json s = nlohmann::json::object();
  if (o.dataset == DatasetKind::kShanghaiTech) return s;
  s["dataset"] = Name(o.dataset);
  s["eval_split"] = EvalSplit(o);
  if (o.dataset == DatasetKind::kUcf50) s["fold"] = o.fold;
  if (!o.val_list.empty()) s["val_list"] = fs::absolute(o.val_list).lexically_normal().string();
  return s;
}

// The manifest's `settings.resize`: the size limits in force (0 = none).
nlohmann::json SizeSettings(const CropShardsOptions& o) {
  const SizeLimits l = o.ResolveSize();
  return {{"min_side", l.min_side}, {"max_side", l.max_side}, {"max_short_side", l.max_short_side}};
}

// The settings that make two shard sets the same one.
nlohmann::json Identity(const CropShardsOptions& o) {
  nlohmann::json id = {{"root", fs::absolute(o.root).lexically_normal().string()},
                       {"part", o.part},
                       {"seed", o.seed},
                       {"random_crops", o.random_crops},
                       {"target", Name(o.target)},
                       {"records_per_shard", o.records_per_shard},
                       {"compress", o.compress},
                       {"resize", SizeSettings(o)}};
  id.update(DatasetSource(o));
  return id;
}

nlohmann::json IdentityOf(const nlohmann::json& m) {
  nlohmann::json id = m.value("settings", nlohmann::json::object());
  if (m.contains("source") && m["source"].is_object()) {
    id["root"] = m["source"].value("root", "");
    id["part"] = m["source"].value("part", "");
    for (const char* key : {"dataset", "eval_split", "fold", "val_list"}) {
      if (m["source"].contains(key)) id[key] = m["source"][key];
    }
  }
  return id;
}

bool IsOurs(const fs::path& p) {
  const std::string name = p.filename().string();
  return IsAtomicTemp(p) || IsShardFileName(name);
}

// Refuses to touch a folder holding something else unless --overwrite, then
// removes the previous set's files: manifest first, so an interruption from
// here on leaves a folder without a manifest (incomplete), never a manifest
// pointing at half-replaced shards.
void PrepareOutput(const CropShardsOptions& o) {
  const fs::path out = o.out;
  if (fs::exists(out) && !fs::is_directory(out)) throw Error(out.string(), "exists and is not a folder");
  const fs::path manifest = out / kManifestName;
  if (fs::exists(manifest) && !o.overwrite) {
    nlohmann::json old;
    try {
      old = nlohmann::json::parse(ReadTextFile(manifest));
    } catch (const nlohmann::json::exception&) {
      throw Error(manifest.string(), "exists but is not a shard set manifest; pass --overwrite to replace it");
    }
    if (IdentityOf(old) != Identity(o)) {
      throw Error(out.string(), StrCat("holds a different shard set (", IdentityOf(old).dump(),
                                       "); choose another --out or pass --overwrite to replace it"));
    }
  } else if (fs::is_directory(out) && !fs::exists(manifest) && !o.overwrite) {
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename().string();
      // A kill while the manifest was written leaves its temporary.
      const bool manifest_temp = IsAtomicTemp(e.path()) && name.rfind(kManifestName, 0) == 0;
      bool ours = name == "train" || name == "test" || manifest_temp;
      if (ours && e.is_directory()) {
        for (const auto& f : fs::directory_iterator(e.path())) ours = ours && IsOurs(f.path());
      }
      if (!ours) {
        throw Error(out.string(), StrCat("is not empty and holds no shard set (found ", name,
                                         "); choose an empty folder or pass --overwrite"));
      }
    }
  }
  MakeDirs(out);
  std::error_code ec;
  if (fs::remove(manifest, ec)) log::Info("replacing the shard set in ", out.string());
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (IsAtomicTemp(e.path()) && name.rfind(kManifestName, 0) == 0) fs::remove(e.path(), ec);
  }
  for (const char* split : {"train", "test"}) {
    if (!fs::is_directory(out / split)) continue;
    for (const auto& f : fs::directory_iterator(out / split)) {
      if (IsOurs(f.path())) fs::remove(f.path(), ec);
    }
  }
}

nlohmann::json GtManifest(const Summary& s) {
  nlohmann::json gt = nlohmann::json::object();
  for (const char* key : kGtKeys) {
    auto it = s.gt_values.find(key);
    if (it == s.gt_values.end()) {
      gt[key] = "unknown";
    } else if (it->second.size() == 1) {
      gt[key] = *it->second.begin();
    } else {
      gt[key] = std::vector<std::string>(it->second.begin(), it->second.end());
    }
  }
  gt["maps_without_settings"] = s.maps_without_settings;
  return gt;
}

nlohmann::json Source(const CropShardsOptions& o, const nlohmann::json& id, const Discovery& found) {
  nlohmann::json s = {{"root", id["root"]}, {"part", o.part}, {"part_dir", fs::absolute(found.part_dir).string()}};
  s.update(DatasetSource(o));
  return s;
}

// What crop_shards adds to the manifest the ShardSetWriter writes: where the
// set came from, its settings, the ground truth used, and per split the
// images behind the records.
nlohmann::json ManifestExtra(const CropShardsOptions& o, const Discovery& found, const Summary& s) {
  const nlohmann::json id = Identity(o);
  return {{"created_by", StrCat("csrnet-cpp crop_shards ", CSR_VERSION)},
          {"source", Source(o, id, found)},
          {"settings",
           {{"seed", o.seed},
            {"random_crops", o.random_crops},
            {"target", Name(o.target)},
            {"records_per_shard", o.records_per_shard},
            {"compress", o.compress},
            {"resize", SizeSettings(o)}}},
          {"ground_truth", GtManifest(s)},
          {"checksum", "crc32 of the whole file (zlib.crc32)"},
          {"totals", {{"images", s.images[0] + s.images[1]}, {"skipped_images", s.skipped[0] + s.skipped[1]}}}};
}

nlohmann::json SplitExtra(const CropShardsOptions& o, const Summary& s) {
  nlohmann::json out = nlohmann::json::object();
  for (int k = 0; k < 2; ++k) {
    out[k == 0 ? "train" : "test"] = {
        {"images", s.images[k]},
        {"skipped_images", s.skipped[k]},
        {"annotations", s.annotations[k]},
        {"target", Name(k == 0 ? o.target : TargetRule::kSum8)},
        {"crops", k == 0 ? StrCat("4 quarters + ", o.random_crops,
                                  " random per image, each half the image rounded "
                                  "down to a multiple of 8; mirroring left to the trainer")
                         : std::string("whole image")}};
  }
  return out;
}

void CheckDensityMapsExist(const Discovery& found, const CropShardsOptions& o) {
  int64_t missing = 0;
  const Sample* first = nullptr;
  for (const auto& s : found.samples) {
    if (!fs::exists(s.density)) {
      ++missing;
      if (!first) first = &s;
    }
  }
  if (first) {
    throw Error(first->density.string(), StrCat("density map not found (", missing, " of ", found.samples.size(),
                                                " missing); run `", GtGenCommand(o), "` first"));
  }
}

void Tally(const Job& job, Summary* s) {
  const int k = job.train ? 0 : 1;
  ++s->images[k];
  s->annotations[k] += job.annotations;
  s->pixels += static_cast<int64_t>(job.width) * job.height;
  if (job.skipped) {
    ++s->skipped[k];
    log::Warn(job.sample->image.string(), ": ", job.width, "x", job.height, " is too small to crop; skipped");
  }
  if (job.gt.settings.empty()) ++s->maps_without_settings;
  for (const auto& [key, value] : job.gt.settings) s->gt_values[key].insert(value);
  const int64_t points = static_cast<int64_t>(job.points.size());
  if (job.gt.annotation_count >= 0 && job.gt.annotation_count != points) {
    ++s->stale_maps;
    log::Warn(job.sample->density.string(), ": made from ", job.gt.annotation_count, " annotations but ",
              job.sample->annotation.filename().string(), " has ", points, "; rerun gt_gen");
  }
}

// The training split and the eval split of the dataset; other splits are left out.
Discovery Discover(const CropShardsOptions& o) {
  Discovery d = DiscoverDataset({o.dataset, o.root, o.part, "all", o.val_list, o.fold});
  const std::string eval = EvalSplit(o);
  d.samples.erase(std::remove_if(d.samples.begin(), d.samples.end(),
                                 [&](const Sample& s) { return s.split != "train" && s.split != eval; }),
                  d.samples.end());
  RequireLabels(d, o.dataset, "--eval-split");
  return d;
}

// As in gt_gen: an image without annotation leaves the set incomplete (an
// error); an annotation without image has nothing to crop (a warning).
void CheckPairs(const Discovery& found) {
  if (!found.unannotated_images.empty()) {
    const fs::path& first = found.unannotated_images.front();
    throw Error(first.string(), StrCat("image has no annotation; ", found.unannotated_images.size(),
                                       " such image(s) would leave the shard set incomplete"));
  }
  for (const auto& p : found.orphan_annotations) log::Warn(p.string(), ": annotation has no image; skipped");
}

}  // namespace

CropShardsReport BuildShards(const CropShardsOptions& o) {
  o.Check();
  const auto start = std::chrono::steady_clock::now();
  const Discovery found = Discover(o);
  if (found.samples.empty()) throw Error(o.root, "no annotated images to crop");
  if (found.stray_files > 0) log::Info("ignoring ", found.stray_files, " stray file(s) in ", found.part_dir.string());
  CheckPairs(found);
  if (o.density_source == DensitySource::kMaps) CheckDensityMapsExist(found, o);
  const DensityOptions dopt = o.ResolveDensity();
  const SizeLimits limits = o.ResolveSize();
  if (limits.active()) log::Info("images and points rescaled to ", Describe(limits));
  if (o.density_source != DensitySource::kMaps) {
    const auto missing = std::count_if(found.samples.begin(), found.samples.end(),
                                       [&](const Sample& s) { return !fs::exists(s.density); });
    const bool all = o.density_source == DensitySource::kAnnotations || limits.active();
    const auto made = all ? found.samples.size() : static_cast<size_t>(missing);
    if (made > 0) {
      log::Info(made, " of ", found.samples.size(), " densities made in memory from the annotations (",
                DescribeSettings(dopt), ")");
    }
  }
  PrepareOutput(o);

  CropShardsReport report;
  report.threads = o.threads > 0 ? o.threads : tbb::info::default_concurrency();
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(report.threads));
  // Removes the shards of a failed run when it goes out of scope unfinished.
  ShardSetWriter set(o.out, {"train", "test"}, o.records_per_shard, o.compress);
  Summary summary;
  std::unique_ptr<Progress> progress;
  if (!o.quiet) progress = std::make_unique<Progress>("crop_shards", static_cast<int64_t>(found.samples.size()));
  // The jobs are owned here, one slot per image, and travel through the
  // pipeline as plain pointers: a cancelled pipeline (an error) does not
  // destroy the items in flight, so they must not own anything.
  std::vector<std::unique_ptr<Job>> jobs(found.samples.size());
  size_t next = 0;
  const char handoff = 0;  // jobs pass between stages inside libtbb: see common/base/tsan.h
  try {
    const tbb::filter<void, void> chain =
        tbb::make_filter<void, Job*>(tbb::filter_mode::serial_in_order,
                                     tsan::Task(&handoff,
                                                [&](tbb::flow_control& fc) -> Job* {
                                                  if (next >= found.samples.size()) {
                                                    fc.stop();
                                                    return nullptr;
                                                  }
                                                  jobs[next] = ReadInputs(found.samples[next], o, limits);
                                                  return jobs[next++].get();
                                                })) &
        tbb::make_filter<Job*, Job*>(tbb::filter_mode::parallel, tsan::Task(&handoff,
                                                                            [&](Job* job) {
                                                                              MakeRecords(*job, o, dopt, limits);
                                                                              return job;
                                                                            })) &
        tbb::make_filter<Job*, void>(
            tbb::filter_mode::serial_in_order, tsan::Task(&handoff, [&](Job* job) {
              ShardWriter& w = set.split(job->train ? "train" : "test");
              w.Add(job->encoded);
              Tally(*job, &summary);
              if (progress) progress->Tick();
              jobs[static_cast<size_t>(job->sample - found.samples.data())].reset();  // frees its pixels
            }));
    tsan::Release(&handoff);
    tbb::parallel_pipeline(static_cast<size_t>(std::max(4, 2 * report.threads)), chain);
    tsan::Acquire(&handoff);
    set.Finish(ManifestExtra(o, found, summary), SplitExtra(o, summary));
    if (progress) progress->Finish();
  } catch (...) {
    tsan::Acquire(&handoff);
    set.Abandon();  // leave no shard of a failed run behind
    throw;
  }

  report.images = summary.images[0] + summary.images[1];
  report.skipped_images = summary.skipped[0] + summary.skipped[1];
  report.train_records = set.split("train").records();
  report.test_records = set.split("test").records();
  for (const char* split : {"train", "test"}) {
    for (const auto& f : set.shards(split)) {
      ++report.shards;
      report.bytes += f.bytes;
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (summary.stale_maps > 0) {
    log::Warn(summary.stale_maps, " density map(s) disagree with their annotations; rerun `", GtGenCommand(o), "`");
  }
  return report;
}

int RunCropShards(int argc, const char* const* argv) {
  return RunTool("crop_shards", [&] {
    CropShardsOptions o;
    ArgParser p("crop_shards", "[options]",
                "Cuts the CSRNet paper's nine crops per training image (four quarters + random ones, each half the\n"
                "image's width and height) and keeps test images whole, with 1/8-resolution targets from gt_gen's\n"
                "density maps (or densities made in memory from the annotations), into HDF5 shards plus manifest.json\n"
                "(docs/shard_format.md).\n"
                "  crop_shards --root ShanghaiTech --part A --out shards\n"
                "  crop_shards --dataset nwpu --root NWPU-Crowd --out shards\n"
                "  crop_shards --inspect shards [--verify] [--export N --split train --out DIR]");
    AddDatasetOption(p, "dataset", &o.dataset, "dataset layout under --root (docs/datasets.md)");
    p.Add("root", &o.root, "dataset root (ShanghaiTech: the folder holding part_A_final/ or part_A/)");
    p.AddChoice("part", &o.part, {"A", "B"}, "ShanghaiTech part");
    p.Add("eval-split", &o.eval_split, "split stored as the shard set's test split: test, or val (default for nwpu)");
    p.Add("val-list", &o.val_list, "qnrf: file naming the Train/ images that form the val split");
    p.Add("fold", &o.fold, "ucf50: the cross-validation fold 1..5 (test = images 10(K-1)+1..10K)");
    p.AddEnum<DensitySource>(
        "density", &o.density_source,
        {{"auto", DensitySource::kAuto}, {"maps", DensitySource::kMaps}, {"annotations", DensitySource::kAnnotations}},
        "auto: gt_gen's map where it exists, else made in memory from the annotation; "
        "maps: gt_gen's only; annotations: always in memory (identical records)");
    o.density.Register(p, "adaptive for the dense datasets, fixed for ShanghaiTech B and custom points");
    o.size.Register(p);
    p.Add("out", &o.out, "shard set folder to write (with --export: folder for the PNG files)");
    p.Add("seed", &o.seed, "seed of the random crop positions (with each image's name)");
    p.Add("threads", &o.threads, "worker threads; 0 = all cores (output is identical for any value)");
    p.Add("random-crops", &o.random_crops, "random crops per training image besides the four quarters");
    p.AddEnum<TargetRule>(
        "target", &o.target,
        {{Name(TargetRule::kSum8), TargetRule::kSum8}, {Name(TargetRule::kCubic), TargetRule::kCubic}},
        "training target: sum8 = exact 8x8 block sums; cubic = the original's resize*64 (drifts)");
    p.Add("records-per-shard", &o.records_per_shard, "records per shard file");
    p.Add("compress", &o.compress, "deflate level 0..9 for pixels and targets (0 = none)");
    p.Add("overwrite", &o.overwrite, "replace a different shard set, or write into a non-empty folder");
    p.Add("quiet", &o.quiet, "no progress or summary, errors only");
    p.Add("inspect", &o.inspect, "print the statistics of the shard set in this folder instead of building");
    p.Add("verify", &o.verify, "with --inspect: recompute every shard's checksum");
    p.Add("export", &o.export_record, "with --inspect: write record N's image and target heatmap as PNG to --out");
    p.AddChoice("split", &o.split, {"train", "test"}, "the split --export takes its record from");
    if (!p.Parse(argc, argv)) return 0;
    if (o.quiet) log::SetLevel(log::Level::kError);
    if (!o.inspect.empty()) {
      if (o.export_record >= 0) {
        if (!p.IsSet("out")) throw UsageError("--export", "needs --out DIR for the PNG files");
        for (const auto& path : ExportRecord(o.inspect, o.split, o.export_record, o.out)) std::cout << path << "\n";
        return 0;
      }
      InspectShards(o.inspect, o.verify, std::cout);
      return 0;
    }
    if (o.verify) throw UsageError("--verify", "only with --inspect DIR");
    if (p.IsSet("export")) throw UsageError("--export", "only with --inspect DIR");
    const CropShardsReport r = BuildShards(o);
    if (!o.quiet) {
      const double mb = static_cast<double>(r.bytes) / 1e6;
      std::cout << "crop_shards: " << r.train_records << " train + " << r.test_records << " test records from "
                << r.images << " images (" << r.skipped_images << " skipped) -> " << o.out << ": " << r.shards
                << " shards, " << std::fixed << std::setprecision(1) << mb << " MB in " << r.seconds << " s ("
                << mb / std::max(r.seconds, 1e-9) << " MB/s, " << r.threads << " threads)\n";
    }
    return 0;
  });
}

}  // namespace csr
