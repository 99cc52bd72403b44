#include "train/predict.h"

#include <cstdio>
#include <iostream>
#include <map>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "common/base/log.h"
#include "common/io/density_map.h"
#include "common/io/image_io.h"
#include "train/heatmap.h"
#include "train/predictor.h"

namespace csr {

void RegisterPredictOptions(ArgParser& p, PredictOptions* o) {
  RegisterModelSettings(p, &o->model);
  p.Add("out", &o->out, "Folder for <name>_heatmap.png and <name>_density.h5 per image (with --video: the CSV)");
  p.Add("video", &o->video, "Count the frames of this video (any format OpenCV's VideoCapture reads)");
  p.Add("every", &o->every, "With --video: count every N-th frame");
  p.Add("csv", &o->csv, "With --video: CSV file (frame,time,count); default <out>/<video>_counts.csv, or stdout");
  p.Add("annotate", &o->annotate, "With --video: also write the counted frames with heatmap and count (.avi, MJPG)");
  p.Add("alpha", &o->alpha, "Heatmap opacity where the density peaks (0..1)");
}

void PredictOptions::Check() const {
  model.Check();
  CheckRange("--every", every, 1, 1 << 30);
  CheckRange("--alpha", alpha, 0.0, 1.0);
  if (video.empty() && !csv.empty()) CheckThat(false, "--csv", csv, "only applies with --video");
  if (video.empty() && !annotate.empty()) CheckThat(false, "--annotate", annotate, "only applies with --video");
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
    return o.video.empty() ? PredictImages(o, inputs) : PredictVideo(o);
  });
}

}  // namespace csr
