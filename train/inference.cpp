#include "train/inference.h"

#include <algorithm>
#include <thread>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "train/torch_compat.h"

namespace csr {

c10::Device ResolveDevice(const DeviceChoice& choice, const std::string& where) {
  switch (choice.kind) {
    case DeviceChoice::Kind::kAuto:
      return torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
    case DeviceChoice::Kind::kCpu:
      return c10::Device(c10::kCPU);
    case DeviceChoice::Kind::kCuda:
      break;
  }
#ifdef CSR_TORCH_CUDA
  const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
  if (gpus == 0) {
    throw UsageError(where, "CUDA was asked for, but no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)");
  }
  if (choice.index >= gpus) {
    throw UsageError(where, StrCat("cuda:", choice.index, " was asked for, but ", gpus, " GPU(s) are visible"));
  }
#else
  throw UsageError(where,
                   "CUDA was asked for, but this LibTorch has no CUDA (Debian's libtorch-dev is CPU-only): build "
                   "against a CUDA LibTorch (scripts/build.sh --libtorch pip, docs/training.md)");
#endif
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(choice.index));
}

void CheckPrecision(Precision precision, c10::Device device, const std::string& where) {
  if (precision == Precision::kFp16 && !device.is_cuda()) {
    throw UsageError(where, StrCat("fp16 runs on CUDA GPUs, but the model is on ", device.str(),
                                   ": use bf16 (or fp32) on the CPU, or --device cuda"));
  }
}

int SetThreads(int threads) {
  // A million threads would not fail cleanly: they exhaust the process first.
  if (threads < 0 || threads > 1024) throw UsageError("--threads", "must be between 0 (every core) and 1024");
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return at::get_num_threads();
}

void PrepareModel(CSRNet& model, c10::Device device, Precision precision) {
  CSR_ASSERT(precision != Precision::kAuto, "--precision auto must be resolved first (ResolvePrecision)");
  model->to(device);
  SetChannelsLast(model, precision != Precision::kFp32);
}

void PrepareModelForTraining(CSRNet& model, c10::Device device, Precision precision) {
  CSR_ASSERT(precision != Precision::kAuto, "--precision auto must be resolved first (ResolvePrecision)");
  model->to(device);
  SetChannelsLast(model, precision != Precision::kFp32 || device.is_cpu());
}

AutocastGuard::AutocastGuard(Precision precision, c10::Device device) {
  CSR_ASSERT(precision != Precision::kAuto, "--precision auto must be resolved first (ResolvePrecision)");
  if (precision == Precision::kFp32) return;
  active_ = true;
  cuda_ = device.is_cuda();
  const c10::DeviceType type = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  prev_enabled_ = compat::AutocastEnabled(type);
  prev_dtype_ = compat::AutocastDtype(type);
  compat::SetAutocastEnabled(type, true);
  compat::SetAutocastDtype(type, precision == Precision::kFp16 ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Like torch.autocast's __exit__: the cast-weight cache lives only as long
  // as the outermost autocast region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  const c10::DeviceType type = cuda_ ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  compat::SetAutocastEnabled(type, prev_enabled_);
  compat::SetAutocastDtype(type, prev_dtype_);
}

at::Tensor ImageToTensor(const cv::Mat& rgb) {
  at::Tensor t = torch::empty({1, 3, rgb.rows, rgb.cols}, torch::kFloat32);
  NormalizeImage(rgb, false, t.data_ptr<float>());
  return t;
}

namespace {

// Restores a module's training flag on scope exit (also on exceptions).
class EvalScope {
 public:
  explicit EvalScope(CSRNet& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }
  ~EvalScope() { model_->train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  CSRNet& model_;
  bool was_training_;
};

}  // namespace

at::Tensor PredictDensity(CSRNet& model, const at::Tensor& image, const InferenceOptions& opts) {
  CSR_CHECK(image.dim() == 4 && image.size(0) == 1 && image.size(1) == 3, "image", "expected a 1 x 3 x h x w tensor");
  using torch::indexing::Slice;
  const int h = static_cast<int>(image.size(2)), w = static_cast<int>(image.size(3));
  if (h < 8 || w < 8) return torch::zeros({h / 8, w / 8}, torch::kFloat32);  // the network would fail on it
  torch::NoGradGuard no_grad;
  EvalScope eval(model);
  const int margin = ReceptiveFieldMargin(model->backend_variant());
  const at::MemoryFormat format = ModelMemoryFormat(model);
  const cv::Mat density = StitchTiles(h, w, PlanTiles(h, w, opts.tile, margin), [&](const Tile& t) {
    at::Tensor input = image.index({Slice(), Slice(), Slice(t.y0, t.y1), Slice(t.x0, t.x1)}).to(opts.device);
    input = input.contiguous(format);
    at::Tensor out;
    {
      AutocastGuard autocast(opts.precision, opts.device);
      out = model->forward(input);
    }
    const at::Tensor map = out.to(torch::kCPU, torch::kFloat32)[0][0].contiguous();
    return cv::Mat(static_cast<int>(map.size(0)), static_cast<int>(map.size(1)), CV_32F, map.data_ptr<float>()).clone();
  });
  return torch::from_blob(density.data, {density.rows, density.cols}, torch::kFloat32).clone();
}

at::Tensor PredictDensity(CSRNet& model, const cv::Mat& rgb, const InferenceOptions& opts) {
  return PredictDensity(model, ImageToTensor(rgb), opts);
}

}  // namespace csr
