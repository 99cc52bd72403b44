// The LibTorch engine of deploy/engine.h: this project's .pt and .h5
// weights, fp32 with packed oneDNN weights or bf16 on the CPU, or CUDA.
// --precision auto is resolved here, once the model is loaded
// (ResolvePrecision, train/precision_probe.h: on the CPU a short timing of
// both precisions), and recorded for the tool (RecordPrecision).
#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "deploy/engine.h"
#include "deploy/predictor.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/packed_forward.h"
#include "train/precision_probe.h"

namespace csr {
namespace {

cv::Mat ToMat(const at::Tensor& density) {
  const at::Tensor d = density.to(at::kFloat).contiguous();
  if (d.numel() == 0) return cv::Mat::zeros(static_cast<int>(d.size(0)), static_cast<int>(d.size(1)), CV_32F);
  return cv::Mat(static_cast<int>(d.size(0)), static_cast<int>(d.size(1)), CV_32F, d.data_ptr<float>()).clone();
}

class TorchEngine : public DensityEngine {
 public:
  explicit TorchEngine(const ModelSettings& s) {
    opts_.device = ResolveDevice(s.device);
    CheckPrecision(s.precision, opts_.device);
    opts_.tile = 0;  // the Predictor tiles
    threads_ = SetThreads(s.threads);
    model_ = LoadModel(s.weights);
    model_->eval();
    choice_ = ResolvePrecision(s.precision, model_, opts_.device, ProbeMode::kInference);
    opts_.precision = choice_.precision;
    RecordPrecision(s.weights, {choice_.precision, choice_.by_auto});
    PrepareModel(model_, opts_.device, opts_.precision);
    margin_ = ReceptiveFieldMargin(model_->backend_variant());
    const bool cpu = opts_.device.is_cpu();
    if (cpu && opts_.precision == Precision::kFp32 && at::hasMKLDNN()) {
      packed_ = std::make_unique<PackedForward>(model_);
    } else if (cpu && opts_.precision == Precision::kBf16) {
      // Autocast would cast every weight to bf16 on every call; casting them
      // once gives the same bf16 operands (the inputs are still cast by
      // autocast, the convolutions still accumulate in fp32).
      torch::NoGradGuard no_grad;
      model_->to(at::kBFloat16);
    }
  }

  cv::Mat Forward(const float* chw, int height, int width) override {
    const at::Tensor window = at::from_blob(const_cast<float*>(chw), {1, 3, height, width}, at::kFloat);
    if (packed_) return ToMat(packed_->Run(window)[0][0]);
    return ToMat(PredictDensity(model_, window, opts_));
  }

  int margin() const override { return margin_; }

  std::string Describe() const override {
    return StrCat("CSRNet-", BackendName(model_->backend_variant()), " (LibTorch), ", PrecisionName(opts_.precision),
                  packed_ ? " (packed oneDNN weights)" : "", choice_.by_auto ? " chosen by --precision auto" : "", ", ",
                  opts_.device.str(), ", ", threads_, " threads");
  }

 private:
  CSRNet model_{nullptr};
  InferenceOptions opts_;
  PrecisionChoice choice_;                 // what --precision resolved to
  std::unique_ptr<PackedForward> packed_;  // fp32 on the CPU
  int threads_ = 1;
  int margin_ = 0;
};

}  // namespace

std::unique_ptr<DensityEngine> MakeTorchEngine(const ModelSettings& settings) {
  return std::make_unique<TorchEngine>(settings);
}

bool HaveTorchEngine() { return true; }

}  // namespace csr
