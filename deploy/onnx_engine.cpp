// The ONNX engine of deploy/engine.h: an exported CSRNet (tools/export_onnx.py)
// run by OpenCV's DNN module, fp32 on the CPU. No LibTorch.
#include <algorithm>
#include <fstream>
#include <thread>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/dnn/all_layers.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "deploy/engine.h"
#include "deploy/predictor.h"

namespace csr {
namespace {

std::string ShapeOf(const cv::Mat& m) {
  std::string s = "[";
  for (int i = 0; i < m.dims; ++i) s += StrCat(i ? "," : "", m.size[i]);
  return s + "]";
}

// OpenCV's message without its "OpenCV(4.6.0) /path/file.cpp:123: error: (-2:...) " prefix.
std::string Reason(const cv::Exception& e) { return e.err.empty() ? std::string(e.what()) : e.err; }

// Silences OpenCV's own log while alive: a model it cannot run makes it print
// several "[ERROR:0@0.2] global net_impl.cpp ..." lines before it throws, and
// the one line this engine prints names the file instead.
class QuietOpenCv {
 public:
  QuietOpenCv() : level_(cv::utils::logging::getLogLevel()) {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  }
  ~QuietOpenCv() { cv::utils::logging::setLogLevel(level_); }
  QuietOpenCv(const QuietOpenCv&) = delete;
  QuietOpenCv& operator=(const QuietOpenCv&) = delete;

 private:
  cv::utils::logging::LogLevel level_;
};

int Dim(const std::vector<size_t>& v, int i, int fallback) {
  return v.empty() ? fallback : static_cast<int>(v[std::min<size_t>(i, v.size() - 1)]);
}

class OnnxEngine : public DensityEngine {
 public:
  explicit OnnxEngine(const ModelSettings& s) : path_(s.weights) {
    // auto is fp32 here, without measuring: OpenCV's DNN runs nothing else.
    if (s.precision != Precision::kFp32 && s.precision != Precision::kAuto) {
      throw UsageError("--precision", StrCat("the onnx engine runs fp32 only (", PrecisionName(s.precision),
                                             " needs --engine libtorch)"));
    }
    by_auto_ = s.precision == Precision::kAuto;
    if (s.device.kind == DeviceChoice::Kind::kCuda) {
      throw UsageError("--device", "the onnx engine runs on the CPU (OpenCV DNN); CUDA needs --engine libtorch");
    }
    if (!fs::is_regular_file(path_)) throw Error(path_, "no such model file");
    if (!std::ifstream(path_, std::ios::binary)) throw Error(path_, "cannot read the model file");
    threads_ = s.threads > 0 ? s.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cv::setNumThreads(threads_);
    try {
      QuietOpenCv quiet;
      net_ = cv::dnn::readNetFromONNX(path_);
    } catch (const cv::Exception& e) {
      throw Error(path_, StrCat("not an ONNX model OpenCV's DNN module can read (", Reason(e), ")"));
    }
    if (net_.empty()) throw Error(path_, "not an ONNX model OpenCV's DNN module can read (an empty network)");
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    ReadChain();
    Probe();
    RecordPrecision(path_, {Precision::kFp32, by_auto_});
    if (by_auto_) log::Info("precision auto: fp32 (the onnx engine runs fp32 only; nothing measured)");
  }

  cv::Mat Forward(const float* chw, int height, int width) override {
    const int shape[4] = {1, 3, height, width};
    const cv::Mat blob(4, shape, CV_32F, const_cast<float*>(chw));
    cv::Mat out;
    try {
      QuietOpenCv quiet;
      net_.setInput(blob);
      out = net_.forward();
    } catch (const cv::Exception& e) {
      throw Error(path_, StrCat("OpenCV DNN failed on a ", height, " x ", width, " input (", Reason(e), ")"));
    }
    if (out.dims != 4 || out.size[0] != 1 || out.size[1] != 1) {
      throw Error(path_, StrCat("output of shape ", ShapeOf(out), " for a ", height, " x ", width,
                                " input; a CSRNet density model gives [1,1,h/8,w/8]"));
    }
    return cv::Mat(out.size[2], out.size[3], CV_32F, out.ptr<float>()).clone();
  }

  int margin() const override { return margin_; }

  std::string Describe() const override {
    return StrCat(fs::path(path_).filename().string(), " (ONNX, ", convs_, " convolutions, OpenCV ", CV_VERSION,
                  " DNN), fp32", by_auto_ ? " chosen by --precision auto" : "", ", cpu, ", threads_, " threads");
  }

 private:
  // The convolutions and poolings in graph order: their reach is the margin.
  void ReadChain() {
    std::vector<LayerGeometry> chain;
    for (const std::string& name : net_.getLayerNames()) {
      const cv::Ptr<cv::dnn::Layer> layer = net_.getLayer(net_.getLayerId(name));
      if (const auto* conv = dynamic_cast<const cv::dnn::BaseConvolutionLayer*>(layer.get())) {
        // Square kernels in CSRNet; for others the wider axis bounds the reach.
        chain.push_back({std::max(Dim(conv->kernel_size, 0, 1), Dim(conv->kernel_size, 1, 1)),
                         std::max(Dim(conv->strides, 0, 1), Dim(conv->strides, 1, 1)),
                         std::max(Dim(conv->dilations, 0, 1), Dim(conv->dilations, 1, 1))});
        ++convs_;
      } else if (const auto* pool = dynamic_cast<const cv::dnn::PoolingLayer*>(layer.get())) {
        chain.push_back({std::max(Dim(pool->kernel_size, 0, 1), Dim(pool->kernel_size, 1, 1)),
                         std::max(Dim(pool->strides, 0, 1), Dim(pool->strides, 1, 1)), 1});
      }
    }
    if (convs_ == 0) throw Error(path_, "not a CSRNet density model: the graph has no convolution");
    margin_ = ChainMargin(chain);
  }

  // A 64 x 64 image must give one 8 x 8 map: a model of another network
  // (other input channels, fixed input size, another output) stops here.
  void Probe() {
    std::vector<float> zeros(3 * 64 * 64, 0.0f);
    cv::Mat out;
    try {
      QuietOpenCv quiet;
      const int shape[4] = {1, 3, 64, 64};
      net_.setInput(cv::Mat(4, shape, CV_32F, zeros.data()));
      out = net_.forward();
    } catch (const cv::Exception& e) {
      throw Error(path_,
                  StrCat("not a CSRNet density model: it does not run on a 1 x 3 x 64 x 64 image (", Reason(e), ")"));
    }
    if (out.dims != 4 || out.size[0] != 1 || out.size[1] != 1 || out.size[2] != 8 || out.size[3] != 8) {
      throw Error(path_, StrCat("not a CSRNet density model: a 1 x 3 x 64 x 64 image gives an output of shape ",
                                ShapeOf(out), ", expected [1,1,8,8] (one density map at 1/8 scale)"));
    }
  }

  std::string path_;
  cv::dnn::Net net_;
  int threads_ = 1;
  int margin_ = 0;
  int convs_ = 0;
  bool by_auto_ = false;  // --precision auto (resolved to fp32)
};

}  // namespace

std::unique_ptr<DensityEngine> MakeOnnxEngine(const ModelSettings& settings) {
  return std::make_unique<OnnxEngine>(settings);
}

}  // namespace csr
