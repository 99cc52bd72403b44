#include "train/inference.h"

#include <algorithm>
#include <thread>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "common/base/error.h"

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
  if (!torch::cuda::is_available()) {
    throw UsageError(where,
                     "CUDA was asked for, but this LibTorch has no CUDA or no GPU is visible "
                     "(build against a CUDA LibTorch, see docs/training.md)");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(choice.index));
}

int SetThreads(int threads) {
  // A million threads would not fail cleanly: they exhaust the process first.
  if (threads < 0 || threads > 1024) throw UsageError("--threads", "must be between 0 (every core) and 1024");
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return at::get_num_threads();
}

void PrepareModel(CSRNet& model, c10::Device device, Precision precision) {
  model->to(device);
  SetChannelsLast(model, precision == Precision::kBf16);
}

void PrepareModelForTraining(CSRNet& model, c10::Device device, Precision precision) {
  model->to(device);
  SetChannelsLast(model, precision == Precision::kBf16 || device.is_cpu());
}

AutocastGuard::AutocastGuard(Precision precision, c10::Device device) {
  if (precision != Precision::kBf16) return;
  active_ = true;
  cuda_ = device.is_cuda();
  if (cuda_) {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Like torch.autocast's __exit__: the cast-weight cache lives only as long
  // as the outermost autocast region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  }
}

void NormalizeImage(const cv::Mat& rgb, bool mirror, float* out) {
  CSR_CHECK(rgb.type() == CV_8UC3, "image", "expected an 8-bit RGB image");
  const int h = rgb.rows, w = rgb.cols;
  const size_t plane = static_cast<size_t>(h) * w;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * kImageNetStd[c]);
    shift[c] = -kImageNetMean[c] / kImageNetStd[c];
  }
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const int sx = mirror ? w - 1 - x : x;
      const size_t o = static_cast<size_t>(y) * w + x;
      for (int c = 0; c < 3; ++c) out[c * plane + o] = row[3 * sx + c] * scale[c] + shift[c];
    }
  }
}

at::Tensor ImageToTensor(const cv::Mat& rgb) {
  at::Tensor t = torch::empty({1, 3, rgb.rows, rgb.cols}, torch::kFloat32);
  NormalizeImage(rgb, false, t.data_ptr<float>());
  return t;
}

namespace {

// Splits the output cells [0, cells) of an axis of `pixels` input pixels into
// blocks, each with its input window (see PlanTiles).
struct Span {
  int in0, in1, out0, out1;
};
std::vector<Span> PlanAxis(int pixels, int block_cells, int margin) {
  const int cells = pixels / 8;
  std::vector<Span> spans;
  for (int a = 0; a < cells; a += block_cells) {
    const int b = std::min(cells, a + block_cells);
    const int in0 = std::max(0, 8 * a - margin);
    const int in1 = b == cells ? pixels : std::min(pixels, 8 * b + margin);
    spans.push_back({in0, in1, a, b});
  }
  return spans;
}

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

std::vector<Tile> PlanTiles(int height, int width, int tile, int margin) {
  const bool whole = tile <= 0 || (height <= tile && width <= tile);
  const int block = whole ? std::max(height, width) / 8 + 1 : std::max(1, tile / 8);
  std::vector<Tile> tiles;
  for (const Span& r : PlanAxis(height, block, margin)) {
    for (const Span& c : PlanAxis(width, block, margin)) {
      tiles.push_back({r.in0, r.in1, c.in0, c.in1, r.out0, r.out1, c.out0, c.out1});
    }
  }
  return tiles;
}

at::Tensor StitchTiles(int height, int width, const std::vector<Tile>& tiles,
                       const std::function<at::Tensor(const Tile&)>& window_density) {
  using torch::indexing::Slice;
  at::Tensor density = torch::zeros({height / 8, width / 8}, torch::kFloat32);
  for (const Tile& t : tiles) {
    if (t.oy1 <= t.oy0 || t.ox1 <= t.ox0) continue;  // no output cell
    const at::Tensor part = window_density(t);
    const int cy = t.y0 / 8, cx = t.x0 / 8;
    density.index_put_({Slice(t.oy0, t.oy1), Slice(t.ox0, t.ox1)},
                       part.index({Slice(t.oy0 - cy, t.oy1 - cy), Slice(t.ox0 - cx, t.ox1 - cx)}));
  }
  return density;
}

at::Tensor PredictDensity(CSRNet& model, const at::Tensor& image, const InferenceOptions& opts) {
  CSR_CHECK(image.dim() == 4 && image.size(0) == 1 && image.size(1) == 3, "image", "expected a 1 x 3 x h x w tensor");
  using torch::indexing::Slice;
  const int h = static_cast<int>(image.size(2)), w = static_cast<int>(image.size(3));
  if (h < 8 || w < 8) return torch::zeros({h / 8, w / 8}, torch::kFloat32);  // the network would fail on it
  torch::NoGradGuard no_grad;
  EvalScope eval(model);
  const int margin = ReceptiveFieldMargin(model->backend_variant());
  const at::MemoryFormat format = ModelMemoryFormat(model);
  return StitchTiles(h, w, PlanTiles(h, w, opts.tile, margin), [&](const Tile& t) {
    at::Tensor input = image.index({Slice(), Slice(), Slice(t.y0, t.y1), Slice(t.x0, t.x1)}).to(opts.device);
    input = input.contiguous(format);
    at::Tensor out;
    {
      AutocastGuard autocast(opts.precision, opts.device);
      out = model->forward(input);
    }
    return out.to(torch::kCPU, torch::kFloat32)[0][0];
  });
}

at::Tensor PredictDensity(CSRNet& model, const cv::Mat& rgb, const InferenceOptions& opts) {
  return PredictDensity(model, ImageToTensor(rgb), opts);
}

}  // namespace csr
