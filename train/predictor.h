// The inference engine predict, evaluate and the benchmark share: a
// Predictor loads any supported weights file and counts images of any size
// in bounded memory, on the CPU (fp32 with packed oneDNN weights, or bf16)
// or on CUDA.
//
// This header has no LibTorch includes on purpose: the tools, tests and
// evaluate.cpp that use it compile in seconds instead of minutes.
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "common/base/cli.h"
#include "train/choices.h"

namespace csr {

// How the network runs; the options predict, evaluate and the benchmark share.
struct ModelSettings {
  std::string weights;  // .pt (model or checkpoint) or .h5 (original layout); detected from the content
  int tile = 1024;      // images larger than this many pixels a side run in tiles (0 = never)
  Precision precision = Precision::kFp32;  // fp32 | bf16 (autocast, channels-last)
  DeviceChoice device;                     // auto | cpu | cuda | cuda:N
  int threads = 0;                         // LibTorch compute threads; 0 = every core

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};
void RegisterModelSettings(ArgParser& parser, ModelSettings* settings);

// A loaded CSRNet ready to count. Not thread-safe (one image at a time; the
// network itself uses --threads cores).
class Predictor {
 public:
  // Loads the weights (format detected from the content) and prepares the
  // model for the device and precision. Throws csr::Error naming the file and
  // the missing or mis-shaped tensor for weights of another architecture, and
  // csr::UsageError for a bad device, tile or thread count.
  explicit Predictor(const ModelSettings& settings);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  // The density map (CV_32F, floor(h/8) x floor(w/8)) of an 8-bit RGB image;
  // its sum is the count. Above the tile size the image is normalised and run
  // tile by tile, each tile with margins covering the receptive field that
  // are cropped before stitching (StitchTiles, train/inference.h): the map
  // equals whole-image inference up to float rounding, and memory stays
  // bounded by the tile, not the image. Before each image the process's heap
  // policy follows whether it runs whole or tiled (InferenceHeapFor,
  // common/base/heap.h).
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

// The count of a density map. A non-finite one (activations overflowing with
// extreme but finite weights) throws csr::Error naming `image`: it is never
// printed as "-nan".
double FiniteCount(const cv::Mat& density, const std::string& image);

}  // namespace csr
