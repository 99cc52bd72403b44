#include "train/predict.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/io/dataset.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "train/inference.h"
#include "train/model.h"

namespace csr {

// ---- Predictor -----------------------------------------------------------------

namespace {

// fp32 on the CPU: every convolution's weights reordered once into oneDNN's
// blocked layout, and the activations kept in that layout from the first
// convolution to the last. The standard path reorders each weight and each
// activation on every call (about a fifth of fp32 time). Same convolution
// kernels, same arithmetic: results equal the standard path to float rounding.
class PackedForward {
 public:
  explicit PackedForward(CSRNet& model) {
    torch::NoGradGuard no_grad;
    for (torch::nn::Sequential* seq : {&model->frontend, &model->backend}) {
      for (const auto& child : (*seq)->children()) Add(*child);
    }
    Add(*model->output_layer);
  }

  // x: dense 1 x 3 x h x w float -> dense 1 x 1 x h/8 x w/8 float.
  at::Tensor Run(const at::Tensor& x) const {
    torch::NoGradGuard no_grad;
    at::Tensor y = x.contiguous().to_mkldnn();
    for (const Layer& l : layers_) {
      if (l.pool) {
        y = at::max_pool2d(y, {2, 2}, {2, 2});
        continue;
      }
      y = at::mkldnn_convolution(y, l.weight, l.bias, {l.padding, l.padding}, {1, 1}, {l.dilation, l.dilation}, 1);
      if (l.relu) y = at::relu_(y);
    }
    return y.to_dense();
  }

 private:
  struct Layer {
    bool pool = false, relu = false;
    at::Tensor weight, bias;
    int64_t padding = 0, dilation = 1;
  };

  void Add(torch::nn::Module& m) {
    if (auto* conv = m.as<torch::nn::Conv2d>()) {
      Layer l;
      // CSRNet's convolutions keep the size: padding = dilation * (kernel - 1) / 2.
      l.dilation = (*conv->options.dilation())[0];
      l.padding = l.dilation * (conv->weight.size(2) - 1) / 2;
      const at::Tensor w = conv->weight.detach().to(at::kFloat).contiguous();
      l.weight =
          at::mkldnn_reorder_conv2d_weight(w.to_mkldnn(), {l.padding, l.padding}, {1, 1}, {l.dilation, l.dilation}, 1);
      l.bias = conv->bias.detach().to(at::kFloat).contiguous().to_mkldnn();
      layers_.push_back(std::move(l));
    } else if (m.as<torch::nn::ReLU>()) {
      CSR_CHECK(!layers_.empty() && !layers_.back().pool, "model", "unexpected ReLU position");
      layers_.back().relu = true;
    } else if (m.as<torch::nn::MaxPool2d>()) {
      Layer l;
      l.pool = true;
      layers_.push_back(l);
    } else {
      throw Error("model", StrCat("unexpected module ", m.name(), " in CSRNet"));
    }
  }

  std::vector<Layer> layers_;
};

// Whether the tool asked for memory reuse (EnableMemoryReuse), and whether the
// allocator is in reuse mode right now.
bool g_reuse_requested = false;
bool g_reusing = false;

// Reuse mode: freed blocks stay in the heap for the next layer and image.
// Bounded mode: large blocks are mapped per allocation and returned on free.
void SetReuse(bool reuse) {
  if (!g_reuse_requested || reuse == g_reusing) return;
  g_reusing = reuse;
  if (reuse) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  } else {
    // glibc's own steady state (its dynamic threshold rises to 32 MB):
    // blocks under 32 MB are reused from the heap, larger ones are mapped.
    mallopt(M_MMAP_MAX, 65536);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    malloc_trim(0);
  }
}

cv::Mat ToMat(const at::Tensor& density) {
  const at::Tensor d = density.to(at::kFloat).contiguous();
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
  // a tile's window. Each tile's margin cells, which see the window's edge,
  // are dropped; only one window exists as float at a time.
  cv::Mat Tiled(int h, int w, const std::function<at::Tensor(const Tile&)>& window);
};

cv::Mat Predictor::Impl::Tiled(int h, int w, const std::function<at::Tensor(const Tile&)>& window) {
  cv::Mat out = cv::Mat::zeros(h / 8, w / 8, CV_32F);
  const std::vector<Tile> tiles = PlanTiles(h, w, opts.tile, margin);
  SetReuse(tiles.size() == 1);  // see EnableMemoryReuse
  for (const Tile& t : tiles) {
    if (t.oy1 <= t.oy0 || t.ox1 <= t.ox0) continue;  // an image under 8 px: no output cell
    const cv::Mat part = ToMat(Forward(window(t)));
    const int cy = t.y0 / 8, cx = t.x0 / 8;
    part(cv::Range(t.oy0 - cy, t.oy1 - cy), cv::Range(t.ox0 - cx, t.ox1 - cx))
        .copyTo(out(cv::Range(t.oy0, t.oy1), cv::Range(t.ox0, t.ox1)));
  }
  return out;
}

void RegisterModelSettings(ArgParser& p, ModelSettings* s) {
  p.Add("weights", &s->weights,
        "CSRNet weights: this project's .pt (model or checkpoint) or an .h5 in the original "
        "PyTorch layout (detected from the content)");
  p.Add("tile", &s->tile, "Images larger than this many pixels a side run in overlapping tiles (0 = never)");
  p.AddChoice("precision", &s->precision, {"fp32", "bf16"}, "fp32, or bf16 autocast with channels-last tensors");
  p.Add("device", &s->device, "auto, cpu, cuda or cuda:N (auto = CUDA when available)");
  p.Add("threads", &s->threads, "LibTorch compute threads; 0 = every core");
}

Predictor::Predictor(const ModelSettings& s) : impl_(std::make_unique<Impl>()) {
  if (s.weights.empty()) throw UsageError("--weights", "required (a .pt or .h5 CSRNet weights file)");
  if (s.tile != 0 && s.tile < 64) throw UsageError("--tile", "must be 0 (never tile) or at least 64 pixels");
  Impl& m = *impl_;
  m.opts.precision = ParsePrecision(s.precision);
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

void EnableMemoryReuse() {
  // An image's activations are hundreds of MB each; glibc maps such blocks
  // on malloc and returns them on free, so every layer of every image
  // page-faults fresh zeroed memory (10-20 % of the run). Kept in the heap
  // they are reused. The heap also keeps the holes between blocks of
  // different sizes, though (bf16 at 3072 x 2304: 2.0 GB peak instead of
  // 0.95 GB), so tiled images switch back to mapped blocks: their peak
  // memory stays bounded by one tile (Impl::Tiled).
  g_reuse_requested = true;
  SetReuse(true);
}

// ---- Heatmaps and output files ----------------------------------------------

cv::Mat RenderHeatmap(const cv::Mat& rgb, const cv::Mat& density, double count, double alpha,
                      const std::string& caption) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  if (density.rows > 0 && density.cols > 0) {
    // The map covers floor(h/8)*8 x floor(w/8)*8 pixels; the remainder at the
    // right and bottom edges (under 8 px) has no prediction and stays bare.
    cv::Mat d;
    cv::max(density, 0.0, d);  // negative outputs carry no people
    // Colours scale with the map's peak, but at least 0.05 people per 8 x 8
    // cell: a faint, nearly even map (a sparse scene, an untrained model)
    // stays cool instead of being stretched into a red wash.
    double lo = 0, hi = 0;
    cv::minMaxLoc(d, &lo, &hi);
    d /= std::max(hi, 0.05);
    const cv::Size covered(density.cols * 8, density.rows * 8);
    cv::Mat up, up8, colour;
    cv::resize(d, up, covered, 0, 0, cv::INTER_LINEAR);
    up.convertTo(up8, CV_8U, 255.0);
    cv::applyColorMap(up8, colour, cv::COLORMAP_JET);
    // Opacity grows with the density, so empty areas keep the photo visible.
    cv::Mat weight;
    up.convertTo(weight, CV_32F, alpha * 0.75, alpha * 0.25);
    cv::Mat roi = bgr(cv::Rect(cv::Point(0, 0), covered));
    for (int y = 0; y < roi.rows; ++y) {
      cv::Vec3b* p = roi.ptr<cv::Vec3b>(y);
      const cv::Vec3b* c = colour.ptr<cv::Vec3b>(y);
      const float* w = weight.ptr<float>(y);
      for (int x = 0; x < roi.cols; ++x) {
        for (int k = 0; k < 3; ++k) p[x][k] = cv::saturate_cast<uchar>(p[x][k] * (1 - w[x]) + c[x][k] * w[x]);
      }
    }
  }
  // The count in a dark box in the top-left corner, scaled with the image.
  char text[64];
  std::snprintf(text, sizeof text, "count %.1f", count);
  const std::string label = caption.empty() ? text : caption + "  " + text;
  const double scale = std::max(0.4, std::min(bgr.cols, bgr.rows) / 600.0);
  const int thick = std::max(1, static_cast<int>(std::lround(scale * 1.5)));
  int base = 0;
  const cv::Size ts = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, scale, thick, &base);
  const int pad = static_cast<int>(6 * scale);
  cv::rectangle(bgr, cv::Rect(0, 0, ts.width + 2 * pad, ts.height + base + 2 * pad), cv::Scalar(0, 0, 0), cv::FILLED);
  cv::putText(bgr, label, cv::Point(pad, pad + ts.height), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255, 255, 255),
              thick, cv::LINE_AA);
  return bgr;
}

std::string EncodePng(const cv::Mat& bgr) {
  std::vector<uchar> buf;
  if (!cv::imencode(".png", bgr, buf)) throw Error("png", "cannot encode image");
  return std::string(buf.begin(), buf.end());
}

void WriteDensityH5(const std::string& path, const cv::Mat& density, const std::string& image, int width, int height) {
  AtomicFile out(path);
  {
    h5::Lock lock;  // HDF5 is not thread-safe; held for the file's whole life
    H5::H5File f = h5::Create(out.temp_path().string());
    h5::WriteMat(f, "density", density);
    h5::SetAttr(f, "count", cv::sum(density)[0]);
    h5::SetAttr(f, "scale", int64_t{8});
    h5::SetAttr(f, "image", image);
    h5::SetAttr(f, "width", int64_t{width});
    h5::SetAttr(f, "height", int64_t{height});
  }
  out.Commit();
}

// ---- Inputs and outputs -----------------------------------------------------------

std::vector<std::string> CollectImages(const std::vector<std::string>& inputs, std::vector<std::string>* problems) {
  std::vector<std::string> images;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      if (fs::exists(input, ec)) {
        images.push_back(input);  // a file named explicitly is tried whatever its extension
      } else {
        problems->push_back(input + ": no such file or folder");
      }
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (it->is_regular_file(ec) && IsImageFile(name) && name[0] != '.' && !IsAtomicTemp(name)) {
        found.push_back(it->path().string());
      }
    }
    if (ec) problems->push_back(StrCat(input, ": cannot list folder: ", ec.message()));
    std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
      return NaturalLess(a, b) || (!NaturalLess(b, a) && a < b);
    });
    if (found.empty() && !ec) problems->push_back(input + ": no images in this folder");
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

void CheckWritableDir(const std::string& dir) {
  MakeDirs(dir);
  const fs::path probe = fs::path(dir) / ".csrnet-write-probe";
  {
    std::ofstream f(probe);
    f << "x";
    f.flush();
    if (!f) throw Error(dir, "output folder is not writable");
  }
  std::error_code ec;
  fs::remove(probe, ec);
}

void CheckWritableFile(const std::string& path) {
  if (fs::is_directory(path)) throw Error(path, "is a folder (expected an output file name)");
  const fs::path parent = fs::path(path).parent_path();
  CheckWritableDir(parent.empty() ? "." : parent.string());
}

// ---- The predict tool -----------------------------------------------------------

void RegisterPredictOptions(ArgParser& p, PredictOptions* o) {
  RegisterModelSettings(p, &o->model);
  p.Add("out", &o->out, "Folder for <name>_heatmap.png and <name>_density.h5 per image (with --video: the CSV)");
  p.Add("video", &o->video, "Count the frames of this video (any format OpenCV's VideoCapture reads)");
  p.Add("every", &o->every, "With --video: count every N-th frame");
  p.Add("csv", &o->csv, "With --video: CSV file (frame,time,count); default <out>/<video>_counts.csv, or stdout");
  p.Add("annotate", &o->annotate, "With --video: also write the counted frames with heatmap and count (.avi, MJPG)");
  p.Add("alpha", &o->alpha, "Heatmap opacity where the density peaks (0..1)");
}

namespace {

std::string Fixed6(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

// Unique output names per run: IMG_1, then IMG_1_2 for a second IMG_1.jpg.
class OutputNames {
 public:
  std::string Next(const std::string& image) {
    const std::string stem = fs::path(image).stem().string();
    const int n = ++used_[stem];
    return n == 1 ? stem : StrCat(stem, "_", n);
  }

 private:
  std::map<std::string, int> used_;
};

// Redirects the process's stderr to /dev/null while it lives: FFmpeg and
// GStreamer print their own diagnostics straight to fd 2 (seven lines for a
// file that is not a video), before the one line this tool prints itself.
class SilenceStderr {
 public:
  SilenceStderr() {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_ >= 0 && null >= 0) ::dup2(null, STDERR_FILENO);
    if (null >= 0) ::close(null);
  }
  ~SilenceStderr() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, STDERR_FILENO);
      ::close(saved_);
    }
  }
  SilenceStderr(const SilenceStderr&) = delete;
  SilenceStderr& operator=(const SilenceStderr&) = delete;

 private:
  int saved_ = -1;
};

// Opens a video through FFmpeg, with OpenCV's and FFmpeg's logging silenced;
// our own error names the file instead. Only FFmpeg: OpenCV's other back ends
// (GStreamer, camera probes through libusb) are tried in turn on a file they
// cannot read, print their own lines and keep state they never free.
bool OpenQuietly(cv::VideoCapture& cap, const std::string& path) {
  const auto level = cv::utils::logging::getLogLevel();
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  bool opened = false;
  {
    SilenceStderr quiet;
    opened = cap.open(path, cv::CAP_FFMPEG) && cap.isOpened();
  }
  cv::utils::logging::setLogLevel(level);
  return opened;
}

// The count of a density map; a non-finite one (activations overflowing
// with extreme but finite weights) is an error naming the image, never
// printed as "-nan".
double FiniteCount(const cv::Mat& density, const std::string& image) {
  const double count = cv::sum(density)[0];
  if (!std::isfinite(count)) {
    throw Error(image, "the network's count is not finite (weights too large for this image? check --weights)");
  }
  return count;
}

int PredictImages(const PredictOptions& o, const std::vector<std::string>& inputs) {
  std::vector<std::string> problems;
  const std::vector<std::string> images = CollectImages(inputs, &problems);
  if (images.empty()) {
    // Nothing to count: one line per input that gave nothing, the last as the error.
    for (size_t i = 0; i + 1 < problems.size(); ++i) log::Error(problems[i]);
    throw Error("", problems.empty() ? std::string("no images to count") : problems.back());
  }
  for (const std::string& p : problems) log::Error(p);
  if (!o.out.empty()) CheckWritableDir(o.out);
  Predictor predictor(o.model);
  log::Info(images.size(), " image(s); ", predictor.Describe());
  OutputNames names;
  int failed = 0;
  for (const std::string& path : images) {
    try {
      const cv::Mat rgb = ReadImageRGB(path);
      const cv::Mat density = predictor.Density(rgb);
      const double count = FiniteCount(density, path);
      std::cout << path << '\t' << Fixed6(count) << '\n' << std::flush;
      if (!o.out.empty()) {
        const std::string base = (fs::path(o.out) / names.Next(path)).string();
        const std::string png = EncodePng(RenderHeatmap(rgb, density, count, o.alpha));
        WriteFileAtomic(base + "_heatmap.png", png.data(), png.size());
        WriteDensityH5(base + "_density.h5", density, path, rgb.cols, rgb.rows);
      }
    } catch (const std::exception& e) {  // report it, go on with the others
      log::Error(e.what());
      ++failed;
    }
  }
  const int bad = failed + static_cast<int>(problems.size());
  if (bad > 0) log::Error(bad, " input(s) failed; the other ", images.size() - failed, " image(s) were counted");
  return bad > 0 ? 1 : 0;
}

int PredictVideo(const PredictOptions& o) {
  if (!fs::is_regular_file(o.video)) throw Error(o.video, "no such video file");
  std::string csv_path = o.csv;
  const std::string stem = fs::path(o.video).stem().string();
  if (csv_path.empty() && !o.out.empty()) csv_path = (fs::path(o.out) / (stem + "_counts.csv")).string();
  if (!o.out.empty()) CheckWritableDir(o.out);
  if (!csv_path.empty()) CheckWritableFile(csv_path);
  if (!o.annotate.empty()) CheckWritableFile(o.annotate);

  cv::VideoCapture cap;
  if (!OpenQuietly(cap, o.video)) {
    throw Error(o.video, "cannot open video (not a video, or a format OpenCV cannot read)");
  }
  const double fps = cap.get(cv::CAP_PROP_FPS);
  Predictor predictor(o.model);
  log::Info(o.video, ": every ", o.every, " frame(s) at ", fps > 0 ? Fixed6(fps) : std::string("unknown"), " fps; ",
            predictor.Describe());

  // OpenCV picks the container from the file name's extension, so the
  // temporary keeps it: ".name.tmp-PID.avi", renamed when complete.
  const fs::path annotate(o.annotate);
  const fs::path video_temp = annotate.parent_path() /
                              StrCat(".", annotate.stem().string(), ".tmp-", ::getpid(), annotate.extension().string());
  struct RemoveTemp {
    fs::path path;
    ~RemoveTemp() {
      std::error_code ec;
      if (!path.empty()) fs::remove(path, ec);
    }
  } cleanup;
  cv::VideoWriter writer;
  std::ostringstream csv;
  csv << "frame,time,count\n";
  if (csv_path.empty()) std::cout << "frame,time,count\n" << std::flush;
  int64_t frame = 0, counted = 0;
  cv::Mat bgr, rgb;
  for (; cap.grab(); ++frame) {
    if (frame % o.every != 0) continue;
    if (!cap.retrieve(bgr) || bgr.empty()) throw Error(o.video, StrCat("cannot decode frame ", frame));
    cv::cvtColor(bgr, rgb, bgr.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
    const cv::Mat density = predictor.Density(rgb);
    const double count = FiniteCount(density, StrCat(o.video, " frame ", frame));
    const std::string time = fps > 0 ? Fixed6(static_cast<double>(frame) / fps) : std::string();
    const std::string line = StrCat(frame, ",", time, ",", Fixed6(count), "\n");
    csv << line;
    if (csv_path.empty()) std::cout << line << std::flush;
    if (!o.annotate.empty()) {
      if (!writer.isOpened()) {
        const double out_fps = fps > 0 ? std::max(1.0, fps / o.every) : 5.0;
        cleanup.path = video_temp;
        writer.open(video_temp.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), out_fps, rgb.size());
        if (!writer.isOpened()) throw Error(o.annotate, "cannot write video (use an .avi name: MJPG in AVI)");
      }
      writer.write(RenderHeatmap(rgb, density, count, o.alpha, StrCat("frame ", frame)));
    }
    ++counted;
  }
  if (counted == 0) throw Error(o.video, "no frame could be read (empty or corrupt video)");
  if (writer.isOpened()) {
    writer.release();
    std::error_code ec;
    fs::rename(video_temp, annotate, ec);
    if (ec) throw Error(o.annotate, StrCat("cannot move the finished video into place: ", ec.message()));
    cleanup.path.clear();
  }
  if (!csv_path.empty()) WriteTextFileAtomic(csv_path, csv.str());
  log::Info(o.video, ": counted ", counted, " of ", frame, " frames",
            csv_path.empty() ? std::string() : " -> " + csv_path,
            o.annotate.empty() ? std::string() : ", " + o.annotate);
  return 0;
}

}  // namespace

int RunPredict(int argc, const char* const* argv) {
  return RunTool("predict", [&] {
    PredictOptions o;
    std::vector<std::string> inputs;
    ArgParser parser("predict", "--weights FILE [options] IMAGE|DIR ...   or   --weights FILE --video FILE [options]",
                     "Counts people: prints 'path<TAB>count' per image (folders walked in sorted order).\n"
                     "--out DIR writes <name>_heatmap.png and <name>_density.h5 per image; --video counts every "
                     "--every-th frame into a CSV.\nImages above --tile pixels a side run in overlapping tiles "
                     "(same count as whole-image inference, bounded memory).");
    RegisterPredictOptions(parser, &o);
    parser.AddPositional("IMAGE|DIR", &inputs, "Images or folders of images");
    if (!parser.Parse(argc, argv)) return 0;
    EnableMemoryReuse();
    if (o.model.weights.empty()) throw UsageError("--weights", "required (a .pt or .h5 CSRNet weights file)");
    if (o.every < 1) throw UsageError("--every", "must be at least 1");
    if (!(o.alpha >= 0 && o.alpha <= 1)) throw UsageError("--alpha", "must be between 0 and 1");  // NaN too
    if (!o.video.empty() && !inputs.empty()) throw UsageError("--video", "give either --video or images, not both");
    if (o.video.empty() && (!o.csv.empty() || !o.annotate.empty())) {
      throw UsageError(o.csv.empty() ? "--annotate" : "--csv", "only applies with --video");
    }
    if (o.video.empty() && inputs.empty()) throw UsageError("predict", "no images given (see --help)");
    return o.video.empty() ? PredictImages(o, inputs) : PredictVideo(o);
  });
}

}  // namespace csr
