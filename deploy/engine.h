// What runs the network for the Predictor (deploy/predictor.h): an engine
// turns one normalised window into its 1/8 density map. Two engines exist:
//  - LibTorch (train/torch_engine.cpp): this project's .pt and .h5 weights,
//    fp32 with packed oneDNN weights or bf16, on the CPU or CUDA;
//  - ONNX (deploy/onnx_engine.cpp): an exported .onnx model through OpenCV's
//    DNN module, fp32 on the CPU, no LibTorch needed.
// Everything else (tiling, stitching, heatmaps, writers, video) is shared.
#pragma once

#include <memory>
#include <string>

#include <opencv2/core.hpp>

namespace csr {

struct ModelSettings;

class DensityEngine {
 public:
  virtual ~DensityEngine() = default;
  // The 1/8 map (CV_32F, at least floor(h/8) x floor(w/8)) of one normalised
  // planar 3 x h x w window, h and w >= 8, untiled.
  virtual cv::Mat Forward(const float* chw, int height, int width) = 0;
  // Input pixels an output cell sees beyond its own 8 x 8 block, rounded up
  // to a multiple of 8: the tile margin (deploy/tiling.h, ChainMargin).
  virtual int margin() const = 0;
  // "CSRNet-B, fp32 (packed oneDNN weights), cpu, 2 threads".
  virtual std::string Describe() const = 0;
};

// The LibTorch engine. Defined in train/torch_engine.cpp; in a build without
// LibTorch (-DCSR_BUILD_TRAIN=OFF) by deploy/no_torch_engine.cpp, which
// throws csr::UsageError pointing at --engine onnx.
std::unique_ptr<DensityEngine> MakeTorchEngine(const ModelSettings& settings);
// The ONNX engine (OpenCV DNN). Throws csr::Error naming the file for a file
// OpenCV cannot read as ONNX and for a model that is not a 3-channel-in,
// one-1/8-map-out density network; csr::UsageError for options it cannot
// honour (bf16, CUDA).
std::unique_ptr<DensityEngine> MakeOnnxEngine(const ModelSettings& settings);

// Whether this build has the LibTorch engine.
bool HaveTorchEngine();

}  // namespace csr
