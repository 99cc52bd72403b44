// The inference engine predict, evaluate and the benchmarks share: a
// Predictor loads a model (this project's .pt/.h5 weights through LibTorch,
// or an exported .onnx through OpenCV's DNN module, deploy/engine.h) and
// counts images of any size in bounded memory.
//
// No LibTorch here: the predictor builds and runs without it
// (-DCSR_BUILD_TRAIN=OFF, ONNX models only), and the tools, tests and
// evaluate.cpp that use it compile in seconds instead of minutes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/cli.h"
#include "deploy/choices.h"
#include "deploy/tiling.h"

namespace csr {

class DensityEngine;

// How the network runs; the options predict, evaluate and the benchmark share.
struct ModelSettings {
  std::string weights;  // .pt (model or checkpoint), .h5 (original layout) or .onnx; detected from the content
  Engine engine = Engine::kAuto;           // auto | libtorch | onnx
  int tile = 1024;                         // images larger than this many pixels a side run in tiles (0 = never)
  Precision precision = Precision::kFp32;  // auto | fp32 | bf16 | fp16 (LibTorch autocast; fp16 on CUDA)
  DeviceChoice device;                     // auto | cpu | cuda | cuda:N (LibTorch only)
  int threads = 0;                         // compute threads; 0 = every core

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};
void RegisterModelSettings(ArgParser& parser, ModelSettings* settings);

// The engine `settings` asks for; kAuto becomes LibTorch for an HDF5 or zip
// (.pt) file and ONNX otherwise. Throws csr::Error naming the file when it
// cannot be read.
Engine ResolveEngine(const ModelSettings& settings);

// A loaded CSRNet ready to count. Not thread-safe (one image at a time; the
// network itself uses --threads cores).
class Predictor {
 public:
  // Loads the model and prepares it for the device and precision. Throws
  // csr::Error naming the file (and the missing or mis-shaped tensor, or
  // what is wrong with the ONNX graph) for a model of another architecture,
  // and csr::UsageError for a bad engine, device, tile or thread count.
  explicit Predictor(const ModelSettings& settings);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  // The density map (CV_32F, floor(h/8) x floor(w/8)) of an 8-bit RGB image;
  // its sum is the count. Above the tile size the image is normalised and run
  // tile by tile, each tile with margins covering the receptive field that
  // are cropped before stitching (StitchTiles, deploy/tiling.h): the map
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
  // Runs an h x w image tile by tile; `window` writes the normalised input of
  // a tile's window into the buffer, so only one window exists as float.
  cv::Mat Tiled(int height, int width, const std::function<void(const Tile&, float*)>& window);

  std::unique_ptr<DensityEngine> engine_;
  int tile_ = 0;
  std::vector<float> buffer_;  // one normalised window
};

// The count of a density map. A non-finite one (activations overflowing with
// extreme but finite weights) throws csr::Error naming `image`: it is never
// printed as "-nan".
double FiniteCount(const cv::Mat& density, const std::string& image);

}  // namespace csr
