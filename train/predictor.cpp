#include "train/predictor.h"

#include <functional>
#include <vector>

#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/heap.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/packed_forward.h"

namespace csr {
namespace {

cv::Mat ToMat(const at::Tensor& density) {
  const at::Tensor d = density.to(at::kFloat).contiguous();
  if (d.numel() == 0) return cv::Mat::zeros(static_cast<int>(d.size(0)), static_cast<int>(d.size(1)), CV_32F);
  return cv::Mat(static_cast<int>(d.size(0)), static_cast<int>(d.size(1)), CV_32F, d.data_ptr<float>()).clone();
}

}  // namespace

struct Predictor::Impl {
  CSRNet model{nullptr};
  InferenceOptions opts;
  std::unique_ptr<PackedForward> packed;  // fp32 on the CPU
  int threads = 1;
  int margin = 0;

  // The 1/8 map (2-D float tensor) of one normalised 1 x 3 x h x w window, untiled.
  at::Tensor Forward(const at::Tensor& window) {
    if (window.size(2) < 8 || window.size(3) < 8) {  // no output cell
      return at::zeros({window.size(2) / 8, window.size(3) / 8}, at::kFloat);
    }
    if (packed) return packed->Run(window)[0][0];
    InferenceOptions whole = opts;
    whole.tile = 0;
    return PredictDensity(model, window, whole);
  }

  // Runs an h x w image tile by tile; `window` makes the normalised input of
  // a tile's window, so only one window exists as float at a time.
  cv::Mat Tiled(int h, int w, const std::function<at::Tensor(const Tile&)>& window);
};

cv::Mat Predictor::Impl::Tiled(int h, int w, const std::function<at::Tensor(const Tile&)>& window) {
  const std::vector<Tile> tiles = PlanTiles(h, w, opts.tile, margin);
  InferenceHeapFor(/*tiled=*/tiles.size() > 1);
  return ToMat(StitchTiles(h, w, tiles, [&](const Tile& t) { return Forward(window(t)); }));
}

void RegisterModelSettings(ArgParser& p, ModelSettings* s) {
  p.Add("weights", &s->weights,
        "CSRNet weights: this project's .pt (model or checkpoint) or an .h5 in the original "
        "PyTorch layout (detected from the content)");
  p.Add("tile", &s->tile, "Images larger than this many pixels a side run in overlapping tiles (0 = never)");
  AddPrecisionOption(p, "precision", &s->precision);
  AddDeviceOption(p, "device", &s->device);
  p.Add("threads", &s->threads, "LibTorch compute threads; 0 = every core");
}

void ModelSettings::Check() const {
  CheckThat(!weights.empty(), "--weights", "nothing", "required (a .pt or .h5 CSRNet weights file)");
  if (tile != 0) CheckRange("--tile", tile, 64, 1 << 20, "or 0: never tile");
  CheckRange("--threads", threads, 0, 1024, "0 = every core");
}

Predictor::Predictor(const ModelSettings& s) : impl_(std::make_unique<Impl>()) {
  s.Check();
  Impl& m = *impl_;
  m.opts.precision = s.precision;
  m.opts.device = ResolveDevice(s.device);
  m.opts.tile = s.tile;
  m.threads = SetThreads(s.threads);
  m.model = LoadModel(s.weights);
  m.model->eval();
  PrepareModel(m.model, m.opts.device, m.opts.precision);
  m.margin = ReceptiveFieldMargin(m.model->backend_variant());
  const bool cpu = m.opts.device.is_cpu();
  if (cpu && m.opts.precision == Precision::kFp32 && at::hasMKLDNN()) {
    m.packed = std::make_unique<PackedForward>(m.model);
  } else if (cpu && m.opts.precision == Precision::kBf16) {
    // Autocast would cast every weight to bf16 on every call; casting them
    // once gives the same bf16 operands (the inputs are still cast by
    // autocast, the convolutions still accumulate in fp32).
    torch::NoGradGuard no_grad;
    m.model->to(at::kBFloat16);
  }
}

Predictor::~Predictor() = default;

int Predictor::margin() const { return impl_->margin; }

std::string Predictor::Describe() const {
  const Impl& m = *impl_;
  std::string tiles = m.opts.tile > 0 ? StrCat("tiles of ", m.opts.tile / 8 * 8, " px (margin ", m.margin, ")")
                                      : std::string("no tiling");
  return StrCat("CSRNet-", BackendName(m.model->backend_variant()), ", ", PrecisionName(m.opts.precision),
                m.packed ? " (packed oneDNN weights)" : "", ", ", m.opts.device.str(), ", ", m.threads, " threads, ",
                tiles);
}

cv::Mat Predictor::Density(const cv::Mat& rgb) {
  CSR_CHECK(rgb.type() == CV_8UC3, "image", "expected an 8-bit RGB image");
  return impl_->Tiled(rgb.rows, rgb.cols,
                      [&](const Tile& t) { return ImageToTensor(rgb(cv::Range(t.y0, t.y1), cv::Range(t.x0, t.x1))); });
}

cv::Mat Predictor::DensityNormalized(const float* chw, int height, int width) {
  const at::Tensor image = at::from_blob(const_cast<float*>(chw), {1, 3, height, width}, at::kFloat);
  using torch::indexing::Slice;
  return impl_->Tiled(height, width, [&](const Tile& t) {
    return image.index({Slice(), Slice(), Slice(t.y0, t.y1), Slice(t.x0, t.x1)}).contiguous();
  });
}

double FiniteCount(const cv::Mat& density, const std::string& image) {
  const double count = cv::sum(density)[0];
  if (!std::isfinite(count)) {
    throw Error(image, "the network's count is not finite (weights too large for this image? check --weights)");
  }
  return count;
}

}  // namespace csr
