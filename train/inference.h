// Running CSRNet in LibTorch: precision (fp32, bf16 / fp16 autocast), devices,
// threads, and tiled inference with bounded memory (the tiling plan and the
// stitching rule are deploy/tiling.h's). Used by the trainer's validation and
// the LibTorch engine of predict/evaluate (train/torch_engine.cpp).
#pragma once

#include <string>

#include <ATen/core/TensorBody.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <opencv2/core.hpp>

#include "deploy/tiling.h"
#include "train/choices.h"
#include "train/model.h"

namespace csr {

// The device a DeviceChoice (train/choices.h) names on this machine: auto is
// CUDA when available, else the CPU. Throws csr::UsageError naming `where`
// when CUDA is asked for but this LibTorch has none or no GPU is visible.
c10::Device ResolveDevice(const DeviceChoice& choice, const std::string& where = "--device");

// Throws csr::UsageError naming `where` when `precision` cannot run on
// `device`: fp16 autocast runs on CUDA only (on the CPU LibTorch has no fast
// fp16 convolutions; bf16 is the CPU's reduced precision). kAuto passes: it
// resolves to a precision the device runs (train/precision_probe.h).
void CheckPrecision(Precision precision, c10::Device device, const std::string& where = "--precision");

// Intra-op threads for LibTorch; 0 = every core. Returns the number in use.
int SetThreads(int threads);

// Puts the model on `device` and in the memory layout `precision` runs
// fastest with for inference (channels-last for bf16 and fp16). Values are
// unchanged. `precision` is a resolved one (never kAuto: asserted).
void PrepareModel(CSRNet& model, c10::Device device, Precision precision);
// Same for training: channels-last in every precision on the CPU, where
// oneDNN then trains on NHWC activations directly instead of reordering every
// activation to its blocked layout and back (~6% of an fp32 step).
void PrepareModelForTraining(CSRNet& model, c10::Device device, Precision precision);

// While alive, eligible ops (convolutions) run in bf16 or fp16 on the given
// device, as torch.autocast does; does nothing for fp32. `precision` is a
// resolved one (never kAuto: asserted). Not copyable; nests.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, c10::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::ScalarType::BFloat16;
};

// The normalised 1 x 3 x h x w CPU tensor of an RGB uint8 image
// (NormalizeImage, deploy/tiling.h).
at::Tensor ImageToTensor(const cv::Mat& rgb);

struct InferenceOptions {
  // Largest tile side in input pixels (rounded down to a multiple of 8);
  // larger images run tile by tile. 0 = always whole-image.
  int tile = 1024;
  Precision precision = Precision::kFp32;
  c10::Device device = c10::Device(c10::DeviceType::CPU);
};

// The density map (floor(h/8) x floor(w/8) float32, on the CPU) of one
// normalised 1 x 3 x h x w image. Runs in eval mode without autograd (the
// model's training flag is restored), tile by tile when the image exceeds
// opts.tile; the tiles' margins cover the receptive field, so the result
// equals whole-image inference up to float rounding. Inputs are given to the
// network in the model's memory format (see PrepareModel).
at::Tensor PredictDensity(CSRNet& model, const at::Tensor& image, const InferenceOptions& opts);
// Same from an RGB uint8 image (CV_8UC3).
at::Tensor PredictDensity(CSRNet& model, const cv::Mat& rgb, const InferenceOptions& opts);

}  // namespace csr
