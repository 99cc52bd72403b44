#include "deploy/predictor.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "common/base/error.h"
#include "common/base/heap.h"
#include "deploy/engine.h"

namespace csr {

void RegisterModelSettings(ArgParser& p, ModelSettings* s) {
  p.Add("weights", &s->weights,
        "The model: this project's .pt (model or checkpoint), an .h5 in the original PyTorch layout, or an .onnx "
        "file from tools/export_onnx.py (detected from the content)");
  AddEngineOption(p, "engine", &s->engine);
  p.Add("tile", &s->tile, "Images larger than this many pixels a side run in overlapping tiles (0 = never)");
  AddPrecisionOption(p, "precision", &s->precision);
  AddDeviceOption(p, "device", &s->device);
  p.Add("threads", &s->threads, "Compute threads; 0 = every core");
}

void ModelSettings::Check() const {
  CheckThat(!weights.empty(), "--weights", "nothing", "required (a .pt, .h5 or .onnx CSRNet model file)");
  if (tile != 0) CheckRange("--tile", tile, 64, 1 << 20, "or 0: never tile");
  CheckRange("--threads", threads, 0, 1024, "0 = every core");
}

Engine ResolveEngine(const ModelSettings& s) {
  if (s.engine != Engine::kAuto) return s.engine;
  std::ifstream in(s.weights, std::ios::binary);
  if (!in) throw Error(s.weights, "cannot read the model file (missing or unreadable)");
  char head[8] = {};
  if (!in.read(head, sizeof head)) throw Error(s.weights, "too short to be a model file");
  const bool hdf5 = std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0;
  const bool zip = std::memcmp(head, "PK\x03\x04", 4) == 0;
  return hdf5 || zip ? Engine::kLibTorch : Engine::kOnnx;
}

Predictor::Predictor(const ModelSettings& s) {
  s.Check();
  tile_ = s.tile;
  engine_ = ResolveEngine(s) == Engine::kOnnx ? MakeOnnxEngine(s) : MakeTorchEngine(s);
}

Predictor::~Predictor() = default;

int Predictor::margin() const { return engine_->margin(); }

std::string Predictor::Describe() const {
  const std::string tiles =
      tile_ > 0 ? StrCat("tiles of ", tile_ / 8 * 8, " px (margin ", margin(), ")") : std::string("no tiling");
  return StrCat(engine_->Describe(), ", ", tiles);
}

cv::Mat Predictor::Tiled(int h, int w, const std::function<void(const Tile&, float*)>& window) {
  const std::vector<Tile> tiles = PlanTiles(h, w, tile_, margin());
  InferenceHeapFor(/*tiled=*/tiles.size() > 1);
  return StitchTiles(h, w, tiles, [&](const Tile& t) {
    const int th = t.y1 - t.y0, tw = t.x1 - t.x0;
    if (th < 8 || tw < 8) return cv::Mat(cv::Mat::zeros(th / 8, tw / 8, CV_32F));  // no output cell
    buffer_.resize(3 * static_cast<size_t>(th) * tw);
    window(t, buffer_.data());
    return engine_->Forward(buffer_.data(), th, tw);
  });
}

cv::Mat Predictor::Density(const cv::Mat& rgb) {
  CSR_CHECK(rgb.type() == CV_8UC3, "image", "expected an 8-bit RGB image");
  return Tiled(rgb.rows, rgb.cols, [&](const Tile& t, float* out) {
    NormalizeImage(rgb(cv::Range(t.y0, t.y1), cv::Range(t.x0, t.x1)), /*mirror=*/false, out);
  });
}

cv::Mat Predictor::DensityNormalized(const float* chw, int height, int width) {
  const size_t plane = static_cast<size_t>(height) * width;
  return Tiled(height, width, [&](const Tile& t, float* out) {
    const int tw = t.x1 - t.x0;
    for (int c = 0; c < 3; ++c) {
      for (int y = t.y0; y < t.y1; ++y) {
        std::memcpy(out, chw + c * plane + static_cast<size_t>(y) * width + t.x0, sizeof(float) * tw);
        out += tw;
      }
    }
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
