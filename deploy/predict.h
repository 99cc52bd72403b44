// The `predict` tool: counts, heatmaps and density maps for images, folders
// and videos. The engine it runs is deploy/predictor.h (LibTorch or ONNX); the overlay,
// deploy/heatmap.h; the density file, common/io/density_map.h. Images are
// handled in predict.cpp, videos in predict_video.cpp.
#pragma once

#include <string>
#include <vector>

#include "common/base/cli.h"
#include "deploy/predictor.h"

namespace csr {

// Every option of `predict`.
struct PredictOptions {
  ModelSettings model;
  std::string out;              // folder for <name>_heatmap.png and <name>_density.h5 per image (empty = none)
  std::string video;            // count the frames of this video instead of images
  int every = 1;                // with --video: count every N-th frame
  std::string csv;              // with --video: CSV path (frame,time,count); empty = <out>/<video>_counts.csv or stdout
  std::string annotate;         // with --video: write the counted frames with their heatmap to this .avi (MJPG)
  double alpha = 0.5;           // heatmap opacity where the density is highest
  std::string nwpu_submission;  // also write the NWPU-Crowd benchmark's upload file ("id count" per image)

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};
void RegisterPredictOptions(ArgParser& parser, PredictOptions* opts);

// The `predict` tool: predict --weights FILE [options] IMAGE|DIR ... Prints
// "path<TAB>count" per image to stdout. Returns 0, 1 when any input failed
// (the others are still counted), or 2 for bad usage.
int RunPredict(int argc, const char* const* argv);

// The tool's two modes, after RunPredict has checked the options. Images:
// "path<TAB>count" per image, --out files; returns 1 when any input failed.
int PredictImages(const PredictOptions& opts, const std::vector<std::string>& inputs);
// A video: the CSV frame,time,count (to --csv, <out>/<video>_counts.csv or
// stdout) and the optional --annotate video, both atomic.
int PredictVideo(const PredictOptions& opts);

// A count as predict prints and writes it ("%.6f").
std::string FormatCount(double count);

}  // namespace csr
