#include "preprocess/gt_gen.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>

#include <sys/statvfs.h>

#include <nlohmann/json.hpp>
#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_pipeline.h>

#include "common/base/cli.h"
#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/base/tsan.h"
#include "common/io/dataset.h"
#include "common/io/density_map.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "common/io/mat_io.h"

namespace csr {
namespace {

enum class Outcome { kWritten, kUpToDate, kFailed };

struct ImageResult {
  const Sample* sample = nullptr;
  Outcome outcome = Outcome::kFailed;
  std::string error_file, error;
  HeadPixels heads;
  int64_t pixels = 0;
  std::vector<std::string> warnings;
};

bool UpToDate(const Sample& s, const std::string& settings) {
  std::error_code ec;
  if (!fs::exists(s.density, ec)) return false;
  const auto out_time = fs::last_write_time(s.density, ec);
  if (ec || out_time < fs::last_write_time(s.annotation, ec) || out_time < fs::last_write_time(s.image, ec)) {
    return false;
  }
  try {
    h5::Lock lock;  // before the file: its destructor calls HDF5
    const h5::Hid file = h5::OpenRead(s.density.string());
    const hid_t f = file.get();
    return h5::HasAttr(f, "settings") && h5::GetAttrString(f, "settings", s.density.string()) == settings &&
           h5::Exists(f, "density");
  } catch (const std::exception&) {
    return false;  // unreadable: regenerate
  }
}

// Why writing into `dir` failed, when the file system can tell: HDF5's own
// message ("H5Fcreate failed", "write failed") names neither the cause nor the map.
// The system's reason comes first (h5 appends errno's text to HDF5's
// message); the folder's state is the fallback, checked after the fact, when
// another thread may already have freed space.
std::string WriteFailureReason(const fs::path& dir, const std::string& hdf5_reason) {
  for (const char* known : {"No space left on device", "Read-only file system", "Permission denied",
                            "Disk quota exceeded", "No such file or directory"}) {
    if (hdf5_reason.find(known) != std::string::npos) {
      std::string r = known;
      r[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(r[0])));
      return r;
    }
  }
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) == 0) {
    if (st.f_flag & ST_RDONLY) return "read-only file system";
    if (st.f_bavail == 0) return "no space left on device";
  }
  return hdf5_reason;
}

// Under the HDF5 lock: the file, its dataset and attributes. The density map
// is rendered before, outside the lock, so threads only queue for the write.
void WriteDensityFile(const fs::path& temp, const cv::Mat& density, const HeadPixels& heads, const DensityOptions& o,
                      const std::string& settings, const Sample& s) {
  h5::Lock lock;  // declared before the file, so its destructor (even while unwinding) is locked too
  h5::Hid file = h5::Create(temp.string());
  const hid_t f = file.get();
  h5::WriteMat(f, "density", density);
  WriteDensityFormat(f);
  h5::SetAttr(f, "annotation_count", heads.annotations);
  h5::SetAttr(f, "head_pixels", static_cast<int64_t>(heads.pixels.size()));
  h5::SetAttr(f, "merged_points", heads.merged);
  h5::SetAttr(f, "outside_points", heads.outside);
  h5::SetAttr(f, "density_sum", cv::sum(density)[0]);
  h5::SetAttr(f, kDensityCrcAttr, static_cast<int64_t>(DensityCrc32(density)));
  h5::SetAttr(f, "mode", std::string(Name(o.mode)));
  h5::SetAttr(f, "kernel", std::string(Name(o.kernel)));
  h5::SetAttr(f, "sigma_rule",
              o.kernel == KernelRule::kFixed ? StrCat("fixed sigma=", o.sigma)
                                             : StrCat("adaptive beta=", o.beta, " k=", o.neighbors));
  h5::SetAttr(f, "border", std::string(Name(o.border)));
  h5::SetAttr(f, "settings", settings);
  h5::SetAttr(f, "source_image", s.image.filename().string());
  h5::SetAttr(f, "tool_version", std::string("csrnet-cpp gt_gen ") + CSR_VERSION);
  if (!file.Close()) throw Error(temp.string(), StrCat("cannot finish writing: ", h5::LastError()));
}

void WriteDensity(const Sample& s, const cv::Mat& density, const HeadPixels& heads, const DensityOptions& o,
                  const std::string& settings) {
  AtomicFile out(s.density);
  try {
    WriteDensityFile(out.temp_path(), density, heads, o, settings, s);
  } catch (const Error& e) {
    // Name the map, not its temporary, and the cause.
    throw Error(s.density.string(), StrCat("cannot write: ", WriteFailureReason(s.density.parent_path(), e.reason())));
  }
  out.Commit();
}

ImageResult ProcessImage(const Sample& s, const DensityOptions& o, const std::string& settings, bool overwrite) {
  ImageResult r;
  r.sample = &s;
  try {
    if (!overwrite && UpToDate(s, settings)) {
      r.outcome = Outcome::kUpToDate;
      return r;
    }
    Annotation ann;
    if (s.format == AnnotationFormat::kShanghaiTechMat) {
      ann = ReadAnnotation(s.annotation.string());
    } else {
      ann.points = ReadHeads(s);
    }
    const ImageSize size = ReadImageSize(s.image.string());
    r.heads = ToHeadPixels(ann.points, size.width, size.height, s.annotation.string());
    r.pixels = static_cast<int64_t>(size.width) * size.height;
    if (ann.number >= 0 && ann.number != static_cast<int64_t>(ann.points.size())) {
      r.warnings.push_back(StrCat(s.annotation.string(), ": `number` says ", ann.number, " but `location` has ",
                                  ann.points.size(), " points; using the points"));
    }
    if (r.heads.outside > 0) {
      r.warnings.push_back(StrCat(s.annotation.string(), ": ", r.heads.outside, " of ", r.heads.annotations,
                                  " points lie outside the ", size.width, "x", size.height, " image; dropped"));
    }
    if (r.heads.annotations == 0) {
      r.warnings.push_back(StrCat(s.annotation.string(), ": no heads annotated; writing an all-zero map"));
    }
    const std::vector<double> sigmas = HeadSigmas(r.heads.pixels, size.width, size.height, o);
    const cv::Mat density = RenderDensity(r.heads.pixels, sigmas, size.width, size.height, o);
    WriteDensity(s, density, r.heads, o, settings);
    r.outcome = Outcome::kWritten;
  } catch (const Error& e) {
    r.error_file = e.where();
    r.error = e.reason();
  } catch (const std::exception& e) {
    r.error_file = s.image.string();
    r.error = e.what();
  }
  return r;
}

void RemoveTemporariesIn(const fs::path& dir, const std::string& prefix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (IsAtomicTemp(e.path()) && e.path().filename().string().rfind(prefix, 0) == 0) {
      log::Info("removing ", e.path().string(), " left by an interrupted run");
      fs::remove(e.path(), ec);
    }
  }
}

// Temporaries of an interrupted run: beside the maps, and those of the image
// lists in the dataset root (only ours: the root holds the user's files too).
// `lists`: the prefix of the image lists written at the root ("" = none).
void RemoveStaleTemporaries(const fs::path& root, const std::string& lists, const std::vector<Sample>& samples) {
  std::vector<fs::path> dirs;
  for (const auto& s : samples) {
    if (dirs.empty() || dirs.back() != s.density.parent_path()) dirs.push_back(s.density.parent_path());
  }
  for (const auto& dir : dirs) RemoveTemporariesIn(dir, "");
  if (!lists.empty()) RemoveTemporariesIn(root, lists);
}

void WriteImageLists(const fs::path& root, const std::string& part, const std::vector<Sample>& samples,
                     const std::set<std::string>& failed) {
  for (const std::string split : {"train", "test"}) {
    nlohmann::json list = nlohmann::json::array();
    bool any = false;
    for (const auto& s : samples) {
      if (s.split != split) continue;
      any = true;
      if (!failed.count(s.image.string())) list.push_back(fs::absolute(s.image).lexically_normal().string());
    }
    if (any) WriteTextFileAtomic(root / StrCat("part_", part, "_", split, ".json"), list.dump(1) + "\n");
  }
}

constexpr int kMaxThreads = 1024;

}  // namespace

void GtGenOptions::Check() const {
  CheckThat(part == "A" || part == "B", "--part", part, "expected A or B");
  CheckRange("--threads", threads, 0, kMaxThreads, "0 = all cores");
  CheckRange("--fold", fold, 0, 5, "0 = every image");
  ResolveDensityOptions(*this).Check();
}

DensityOptions ResolveDensityOptions(const GtGenOptions& o) { return o.density.Resolve(o.dataset, o.part); }

GtGenReport GenerateGroundTruth(const GtGenOptions& options) {
  options.Check();
  const auto start = std::chrono::steady_clock::now();
  const DensityOptions dopt = ResolveDensityOptions(options);
  const std::string settings = DescribeSettings(dopt);
  Discovery found =
      DiscoverDataset({options.dataset, options.root, options.part, options.split, options.val_list, options.fold});
  const auto unlabelled = std::remove_if(found.samples.begin(), found.samples.end(),
                                         [](const Sample& s) { return s.format == AnnotationFormat::kNone; });
  if (unlabelled != found.samples.end()) {
    log::Info("skipped ", found.samples.end() - unlabelled, " image(s) without labels (a withheld test set)");
    found.samples.erase(unlabelled, found.samples.end());
  }
  const bool shanghaitech = options.dataset == DatasetKind::kShanghaiTech;

  GtGenReport report;
  if (found.stray_files > 0) log::Warn("skipped ", found.stray_files, " stray file(s) (Thumbs.db, extra images...)");
  for (const auto& p : found.unannotated_images) {
    report.failures.emplace_back(p.string(), shanghaitech ? "image has no annotation (GT_" + p.stem().string() + ".mat)"
                                                          : std::string("image has no annotation"));
  }
  for (const auto& [file, why] : report.failures) log::Warn(file, ": ", why);
  // An orphan annotation is a warning, as in crop_shards: nothing can be made
  // of it and nothing is missing from the set (an image without annotation is).
  for (const auto& p : found.orphan_annotations) log::Warn(p.string(), ": annotation has no image; skipped");
  report.orphan_annotations = static_cast<int64_t>(found.orphan_annotations.size());
  if (options.strict && !report.failures.empty()) {
    throw Error(report.failures.front().first, report.failures.front().second + " (--strict)");
  }
  RemoveStaleTemporaries(options.root, shanghaitech ? StrCat("part_", options.part, "_") : "", found.samples);

  const int threads = options.threads > 0 ? options.threads : tbb::info::default_concurrency();
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
  report.threads = threads;
  report.images = static_cast<int64_t>(found.samples.size());

  std::unique_ptr<Progress> progress;
  if (!options.quiet) progress = std::make_unique<Progress>("gt_gen", report.images);
  std::set<std::string> failed_images;
  size_t next = 0;
  std::atomic<bool> stop{false};  // set by the output stage, read by the input stage (other threads)
  const char handoff = 0;         // tokens pass between stages inside libtbb: see common/base/tsan.h
  // Stages pass indices, not results: a token of class type is constructed
  // by oneTBB after the stage body returns, outside the body's hand-off, so
  // TSan would see its fields race with the next stage. The result is
  // written into its slot inside the body and moved out in the last stage.
  std::vector<ImageResult> results(found.samples.size());
  auto next_index = [&](tbb::flow_control& fc) -> size_t {
    if (stop || next >= found.samples.size()) {
      fc.stop();
      return 0;
    }
    return next++;
  };
  auto process = [&](size_t i) {
    results[i] = ProcessImage(found.samples[i], dopt, settings, options.overwrite);
    return i;
  };
  auto collect = [&](size_t i) {
    const ImageResult r = std::move(results[i]);
    results[i] = ImageResult();  // frees its heads now
    for (const auto& w : r.warnings) log::Warn(w);
    switch (r.outcome) {
      case Outcome::kWritten:
        ++report.written;
        break;
      case Outcome::kUpToDate:
        ++report.up_to_date;
        break;
      case Outcome::kFailed:
        log::Error(r.error_file.empty() ? "" : r.error_file + ": ", r.error);
        report.failures.emplace_back(r.error_file, r.error);
        failed_images.insert(r.sample->image.string());
        if (options.strict) stop = true;
        break;
    }
    report.annotations += r.heads.annotations;
    report.head_pixels += static_cast<int64_t>(r.heads.pixels.size());
    report.merged += r.heads.merged;
    report.outside += r.heads.outside;
    report.pixels += r.pixels;
    if (progress) progress->Tick();
  };
  const tbb::filter<void, void> chain =
      tbb::make_filter<void, size_t>(tbb::filter_mode::serial_in_order, tsan::Task(&handoff, next_index)) &
      tbb::make_filter<size_t, size_t>(tbb::filter_mode::parallel, tsan::Task(&handoff, process)) &
      tbb::make_filter<size_t, void>(tbb::filter_mode::serial_in_order, tsan::Task(&handoff, collect));
  tsan::Release(&handoff);
  // Two tokens per thread keep every core busy while bounding the maps in
  // flight (and so memory) whatever the dataset size.
  tbb::parallel_pipeline(2 * static_cast<size_t>(threads), chain);
  tsan::Acquire(&handoff);
  if (progress) progress->Finish();
  if (shanghaitech) WriteImageLists(options.root, options.part, found.samples, failed_images);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

int RunGtGen(int argc, const char* const* argv) {
  return RunTool("gt_gen", [&] {
    GtGenOptions o;
    ArgParser args("gt_gen", "[--root DIR] [--part A|B] [options]",
                   "Turns ShanghaiTech head annotations (GT_IMG_n.mat) into density maps (IMG_n.h5, dataset\n"
                   "`density`, float32 H x W) beside them, as the original CSRNet preprocessing did, and writes\n"
                   "the image lists <root>/part_X_train.json and part_X_test.json.");
    AddDatasetOption(args, "dataset", &o.dataset, "Dataset layout under --root (docs/datasets.md)");
    args.Add("root", &o.root, "Dataset root (ShanghaiTech: the folder holding part_A_final/ or part_A/)");
    args.AddChoice("part", &o.part, {"A", "B"}, "ShanghaiTech part");
    args.AddChoice("split", &o.split, {"train", "val", "test", "all"}, "Which split(s) to process");
    args.Add("val-list", &o.val_list, "qnrf: file naming the Train/ images that form the val split");
    args.Add("fold", &o.fold, "ucf50: the cross-validation fold 1..5 (0 = every image)");
    args.Add("threads", &o.threads, StrCat("Worker threads, 0 = all cores (0..", kMaxThreads, ")"));
    o.density.Register(args, "adaptive for Part A and the dense datasets, fixed for Part B and custom points");
    args.Add("overwrite", &o.overwrite, "Regenerate maps even when they are up to date");
    args.Add("strict", &o.strict, "Stop at the first bad image instead of reporting all at the end");
    args.Add("quiet", &o.quiet, "Print errors only");
    if (!args.Parse(argc, argv)) return 0;
    if (o.density.kernel == KernelRule::kAdaptive && args.IsSet("sigma"))
      log::Warn("--sigma is ignored with the adaptive kernel");
    if (ResolveDensityOptions(o).kernel == KernelRule::kFixed && (args.IsSet("beta") || args.IsSet("neighbors"))) {
      log::Warn("--beta and --neighbors are ignored with the fixed kernel");
    }

    const GtGenReport r = GenerateGroundTruth(o);
    if (!o.quiet) {
      const DensityOptions d = ResolveDensityOptions(o);
      const std::string what = o.dataset == DatasetKind::kShanghaiTech ? "part " + o.part : Name(o.dataset);
      std::printf("gt_gen: %s of %s: %lld images, %lld written, %lld up to date, %zu failed\n", what.c_str(),
                  o.root.c_str(), static_cast<long long>(r.images), static_cast<long long>(r.written),
                  static_cast<long long>(r.up_to_date), r.failures.size());
      std::printf("  %s\n", DescribeSettings(d).c_str());
      std::printf("  %lld annotations -> %lld head pixels (%lld merged duplicates, %lld outside dropped)\n",
                  static_cast<long long>(r.annotations), static_cast<long long>(r.head_pixels),
                  static_cast<long long>(r.merged), static_cast<long long>(r.outside));
      std::printf("  %.2f s on %d threads (%.1f Mpixel/s)\n", r.seconds, r.threads,
                  r.seconds > 0 ? r.pixels / r.seconds / 1e6 : 0.0);
      for (const auto& [file, why] : r.failures) std::printf("  failed: %s: %s\n", file.c_str(), why.c_str());
    }
    return r.failures.empty() ? 0 : 1;
  });
}

}  // namespace csr
