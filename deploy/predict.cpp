#include "deploy/predict.h"

#include <cstdio>
#include <iostream>
#include <map>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "common/base/log.h"
#include "common/io/datasets.h"
#include "common/io/density_map.h"
#include "common/io/image_io.h"
#include "deploy/heatmap.h"
#include "deploy/predictor.h"

namespace csr {

void RegisterPredictOptions(ArgParser& p, PredictOptions* o) {
  RegisterModelSettings(p, &o->model);
  p.Add("out", &o->out, "Folder for <name>_heatmap.png and <name>_density.h5 per image (with --video: the CSV)");
  p.Add("video", &o->video, "Count the frames of this video (any format OpenCV's VideoCapture reads)");
  p.Add("every", &o->every, "With --video: count every N-th frame");
  p.Add("csv", &o->csv, "With --video: CSV file (frame,time,count); default <out>/<video>_counts.csv, or stdout");
  p.Add("annotate", &o->annotate, "With --video: also write the counted frames with heatmap and count (.avi, MJPG)");
  p.Add("alpha", &o->alpha, "Heatmap opacity where the density peaks (0..1)");
  p.Add("nwpu-submission", &o->nwpu_submission,
        "Also write the NWPU-Crowd benchmark's upload file: 'id count' per image, sorted by id. Given the "
        "dataset's root, its test.txt images are counted (1,500 for the real set)");
}

void PredictOptions::Check() const {
  model.Check();
  CheckRange("--every", every, 1, 1 << 30);
  CheckRange("--alpha", alpha, 0.0, 1.0);
  if (video.empty() && !csv.empty()) CheckThat(false, "--csv", csv, "only applies with --video");
  if (video.empty() && !annotate.empty()) CheckThat(false, "--annotate", annotate, "only applies with --video");
  if (!video.empty() && !nwpu_submission.empty()) {
    CheckThat(false, "--nwpu-submission", nwpu_submission, "counts images, not a video");
  }
}

std::string FormatCount(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

namespace {

// Unique output names per run: IMG_1, then IMG_1_2 for a second IMG_1.jpg.
class OutputNames {
 public:
  std::string Next(const std::string& image) {
    const std::string stem = fs::path(image).stem().string();
    const int n = ++used_[stem];
    return n == 1 ? stem : StrCat(stem, "_", n);
  }

 private:
  std::map<std::string, int> used_;
};

}  // namespace

int PredictImages(const PredictOptions& o, const std::vector<std::string>& inputs) {
  std::vector<std::string> problems;
  const std::vector<std::string> images = CollectImages(inputs, &problems);
  if (images.empty()) {
    // Nothing to count: one line per input that gave nothing, the last as the error.
    for (size_t i = 0; i + 1 < problems.size(); ++i) log::Error(problems[i]);
    throw Error("", problems.empty() ? std::string("no images to count") : problems.back());
  }
  for (const std::string& p : problems) log::Error(p);
  if (!o.out.empty()) CheckWritableDir(o.out);
  if (!o.nwpu_submission.empty()) {
    CheckWritableFile(o.nwpu_submission);
    for (const std::string& path : images) {
      const std::string stem = fs::path(path).stem().string();
      if (stem.empty() || stem.find_first_not_of("0123456789") != std::string::npos) {
        throw Error(path, "not an NWPU-Crowd image: --nwpu-submission needs numeric ids (3610.jpg)");
      }
    }
  }
  std::map<int64_t, double> submission;  // id -> count
  Predictor predictor(o.model);
  log::Info(images.size(), " image(s); ", predictor.Describe());
  OutputNames names;
  int failed = 0;
  for (const std::string& path : images) {
    try {
      const cv::Mat rgb = ReadImageRGB(path);
      const cv::Mat density = predictor.Density(rgb);
      const double count = FiniteCount(density, path);
      std::cout << path << '\t' << FormatCount(count) << '\n' << std::flush;
      if (!o.nwpu_submission.empty()) submission[std::stoll(fs::path(path).stem().string())] = count;
      if (!o.out.empty()) {
        const std::string base = (fs::path(o.out) / names.Next(path)).string();
        const std::string png = EncodePng(RenderHeatmap(rgb, density, count, o.alpha));
        WriteFileAtomic(base + "_heatmap.png", png.data(), png.size());
        WritePredictedDensity(base + "_density.h5", density, path, rgb.cols, rgb.rows);
      }
    } catch (const std::exception& e) {  // report it, go on with the others
      log::Error(e.what());
      ++failed;
    }
  }
  const int bad = failed + static_cast<int>(problems.size());
  if (bad > 0) log::Error(bad, " input(s) failed; the other ", images.size() - failed, " image(s) were counted");
  if (!o.nwpu_submission.empty()) {
    // An incomplete upload would be scored as if the missing images had count 0.
    if (bad > 0) throw Error(o.nwpu_submission, "not written: every image must be counted for a submission");
    std::string text;
    for (const auto& [id, count] : submission) {
      char line[64];
      std::snprintf(line, sizeof line, "%lld %.4f\n", static_cast<long long>(id), count);
      text += line;
    }
    WriteTextFileAtomic(o.nwpu_submission, text);
    if (submission.size() != 1500) {
      log::Warn(o.nwpu_submission, ": ", submission.size(),
                " line(s); the benchmark's test set has 1,500 (ids 3610-5109)");
    }
    log::Info(o.nwpu_submission, ": ", submission.size(), " line(s) 'id count'");
  }
  return bad > 0 ? 1 : 0;
}

int RunPredict(int argc, const char* const* argv) {
  return RunTool("predict", [&] {
    PredictOptions o;
    std::vector<std::string> inputs;
    ArgParser parser("predict", "--weights FILE [options] IMAGE|DIR ...   or   --weights FILE --video FILE [options]",
                     "Counts people: prints 'path<TAB>count' per image (folders walked in sorted order).\n"
                     "--out DIR writes <name>_heatmap.png and <name>_density.h5 per image; --video counts every "
                     "--every-th frame into a CSV.\nImages above --tile pixels a side run in overlapping tiles "
                     "(same count as whole-image inference, bounded memory).");
    RegisterPredictOptions(parser, &o);
    parser.AddPositional("IMAGE|DIR", &inputs, "Images or folders of images");
    if (!parser.Parse(argc, argv)) return 0;
    UseInferenceHeap();
    o.Check();
    if (!o.video.empty() && !inputs.empty()) throw UsageError("--video", "give either --video or images, not both");
    if (o.video.empty() && inputs.empty()) throw UsageError("predict", "no images given (see --help)");
    if (!o.nwpu_submission.empty() && inputs.size() == 1 && fs::is_regular_file(fs::path(inputs[0]) / "test.txt") &&
        fs::is_directory(fs::path(inputs[0]) / "images")) {
      // The dataset's root: its test split, as listed in test.txt.
      DatasetQuery q;
      q.kind = DatasetKind::kNwpu;
      q.root = inputs[0];
      q.split = "test";
      inputs.clear();
      for (const Sample& s : DiscoverDataset(q).samples) inputs.push_back(s.image.string());
    }
    return o.video.empty() ? PredictImages(o, inputs) : PredictVideo(o);
  });
}

}  // namespace csr
