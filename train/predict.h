// The `predict` tool (counts, heatmaps and density maps for images, folders
// and videos) and the pieces `evaluate` and the benchmark share with it: a
// Predictor that loads any supported weights file and runs images of any
// size in bounded memory, and the heatmap overlay.
//
// This header has no LibTorch includes on purpose: the tools, tests and
// evaluate.cpp that use it compile in seconds instead of minutes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/cli.h"

namespace csr {

// How the network runs; the options predict, evaluate and the benchmark share.
struct ModelSettings {
  std::string weights;             // .pt (model or checkpoint) or .h5 (original layout); detected from the content
  int tile = 1024;                 // images larger than this many pixels a side run in tiles (0 = never)
  std::string precision = "fp32";  // fp32 | bf16 (autocast, channels-last)
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  int threads = 0;                 // LibTorch compute threads; 0 = every core
};
void RegisterModelSettings(ArgParser& parser, ModelSettings* settings);

// A loaded CSRNet ready to count. Not thread-safe (one image at a time; the
// network itself uses --threads cores).
class Predictor {
 public:
  // Loads the weights (format detected from the content) and prepares the
  // model for the device and precision. Throws csr::Error naming the file and
  // the missing or mis-shaped tensor for weights of another architecture, and
  // csr::UsageError for a bad precision, device, tile or thread count.
  explicit Predictor(const ModelSettings& settings);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  // The density map (CV_32F, floor(h/8) x floor(w/8)) of an 8-bit RGB image;
  // its sum is the count. Above the tile size the image is normalised and run
  // tile by tile, each tile with margins covering the receptive field that
  // are cropped before stitching: the map equals whole-image inference up to
  // float rounding, and memory stays bounded by the tile, not the image.
  cv::Mat Density(const cv::Mat& rgb);
  // Same for an already normalised planar float image (3 x h x w values).
  cv::Mat DensityNormalized(const float* chw, int height, int width);

  // "CSRNet-B, fp32, cpu, 2 threads, tiles of 1024 px (margin 144)".
  std::string Describe() const;
  // The tile margin in input pixels (the receptive field, see train/model.h).
  int margin() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Process-wide allocator setting for the tools: while images run whole,
// freed activation buffers stay in the process for the next layer and image
// instead of going back to the kernel (10-20 % faster: no page faults on
// fresh memory); tiled images switch back to returning them, so their peak
// memory stays bounded by one tile. Call once, early, in a process that
// mostly runs inference.
void EnableMemoryReuse();

// The heatmap overlay: the density upsampled to the image, colour-mapped
// (JET, scaled to the map's maximum but at least 0.05 people per 8 x 8 cell)
// and blended with opacity growing with the density up to `alpha`, the count
// written in the top-left corner. Returns BGR.
cv::Mat RenderHeatmap(const cv::Mat& rgb, const cv::Mat& density, double count, double alpha = 0.5,
                      const std::string& caption = "");
// PNG bytes of a BGR image.
std::string EncodePng(const cv::Mat& bgr);
// The density map as HDF5: dataset `density` (the 1/8 map, float32) with
// attributes count, scale (8), image, width and height. Atomic.
void WriteDensityH5(const std::string& path, const cv::Mat& density, const std::string& image, int width, int height);

// The image files named by `inputs`: a file as given, a folder walked
// recursively (files IsImageFile accepts, in natural sorted order of
// their paths: IMG_2 before IMG_10). Problems (a missing path, a folder
// without images) are appended to `problems` as "path: reason".
std::vector<std::string> CollectImages(const std::vector<std::string>& inputs, std::vector<std::string>* problems);

// Fails early, before any work, when an output cannot be written: creates
// the folder (or the file's folder) and writes a probe file there. Throws
// csr::Error naming the path.
void CheckWritableDir(const std::string& dir);
void CheckWritableFile(const std::string& path);

// Every option of `predict`.
struct PredictOptions {
  ModelSettings model;
  std::string out;       // folder for <name>_heatmap.png and <name>_density.h5 per image (empty = none)
  std::string video;     // count the frames of this video instead of images
  int every = 1;         // with --video: count every N-th frame
  std::string csv;       // with --video: CSV path (frame,time,count); empty = <out>/<video>_counts.csv or stdout
  std::string annotate;  // with --video: write the counted frames with their heatmap to this .avi (MJPG)
  double alpha = 0.5;    // heatmap opacity where the density is highest
};
void RegisterPredictOptions(ArgParser& parser, PredictOptions* opts);

// The `predict` tool: predict --weights FILE [options] IMAGE|DIR ... Prints
// "path<TAB>count" per image to stdout. Returns 0, 1 when any input failed
// (the others are still counted), or 2 for bad usage.
int RunPredict(int argc, const char* const* argv);

}  // namespace csr
