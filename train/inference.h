// Running CSRNet on images: preprocessing, precision (fp32 / bf16 autocast),
// devices, threads, and tiled inference with bounded memory. Shared by the
// trainer's validation and the predict/evaluate tools.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/TensorBody.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <opencv2/core.hpp>

#include "train/choices.h"
#include "train/model.h"

namespace csr {

// The device a DeviceChoice (train/choices.h) names on this machine: auto is
// CUDA when available, else the CPU. Throws csr::UsageError naming `where`
// when CUDA is asked for but this LibTorch has none or no GPU is visible.
c10::Device ResolveDevice(const DeviceChoice& choice, const std::string& where = "--device");

// Intra-op threads for LibTorch; 0 = every core. Returns the number in use.
int SetThreads(int threads);

// Puts the model on `device` and in the memory layout `precision` runs
// fastest with for inference (channels-last for bf16). Values are unchanged.
void PrepareModel(CSRNet& model, c10::Device device, Precision precision);
// Same for training: channels-last in both precisions on the CPU, where
// oneDNN then trains on NHWC activations directly instead of reordering every
// activation to its blocked layout and back (~6% of an fp32 step).
void PrepareModelForTraining(CSRNet& model, c10::Device device, Precision precision);

// While alive, eligible ops (convolutions) run in bf16 on the given device,
// as torch.autocast does; does nothing for fp32. Not copyable; nests.
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

// ImageNet statistics applied to RGB in [0, 1] (the original's Normalize).
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// RGB uint8 (CV_8UC3, h x w) -> normalised float 3 x h x w, optionally
// mirrored left-right. Writes into `out` (3*h*w floats), no allocation.
void NormalizeImage(const cv::Mat& rgb, bool mirror, float* out);
// Same, as a new 1 x 3 x h x w CPU tensor.
at::Tensor ImageToTensor(const cv::Mat& rgb);

// One tile of a tiled pass: the input window [y0, y1) x [x0, x1) and the
// output cells [oy0, oy1) x [ox0, ox1) of the whole map it is responsible for.
struct Tile {
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  int oy0 = 0, oy1 = 0, ox0 = 0, ox1 = 0;
};
// Splits an image's output grid (floor(h/8) x floor(w/8)) into blocks of at
// most `tile` input pixels a side, each read with `margin` extra pixels
// around it (clipped at the image). Windows start on multiples of 8 so the
// pooling grid matches the whole image; a window reaching the image's last
// full cell extends to the image edge. `tile` <= 0 or larger than the image:
// one tile.
std::vector<Tile> PlanTiles(int height, int width, int tile, int margin);

// The whole map (floor(h/8) x floor(w/8) float32, on the CPU) of an h x w
// image from its tiles: `window_density` gives the 1/8 map (2-D float CPU
// tensor) of a tile's input window, and each tile's own cells are copied out
// of it (its margin cells, which see the window's edge, are dropped). The
// one stitching rule of PredictDensity and Predictor.
at::Tensor StitchTiles(int height, int width, const std::vector<Tile>& tiles,
                       const std::function<at::Tensor(const Tile&)>& window_density);

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
