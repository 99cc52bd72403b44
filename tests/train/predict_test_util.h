// Fixtures for the predict/evaluate tests that need no LibTorch headers (so
// those tests compile quickly): CSRNet weight files in the original HDF5
// layout with He-initialised values, small images, tiny shard sets and a
// tiny ShanghaiTech-layout dataset.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/fs.h"
#include "common/io/h5.h"
#include "common/io/mat_io.h"
#include "common/shards/shards.h"
#include "tests/test_util.h"

namespace csr::test {

// Name and shape (OIHW or O) of every CSRNet parameter, in state-dict order.
struct ParamShape {
  std::string name;
  std::vector<hsize_t> shape;
};
inline std::vector<ParamShape> CsrnetShapes() {
  std::vector<ParamShape> out;
  auto conv = [&](const std::string& prefix, int in, int o, int k) {
    out.push_back({prefix + ".weight", {hsize_t(o), hsize_t(in), hsize_t(k), hsize_t(k)}});
    out.push_back({prefix + ".bias", {hsize_t(o)}});
  };
  const int front[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512};
  int in = 3, index = 0;
  for (int w : front) {
    if (w == 0) {
      index += 1;  // max-pool slot
      continue;
    }
    conv("frontend." + std::to_string(index), in, w, 3);
    in = w;
    index += 2;  // conv + ReLU
  }
  const int back[] = {512, 512, 512, 256, 128, 64};
  for (int i = 0; i < 6; ++i) {
    conv("backend." + std::to_string(2 * i), in, back[i], 3);
    in = back[i];
  }
  conv("output_layer", 64, 1, 1);
  return out;
}

// He-initialised CSRNet weights (activations keep their scale through the
// 17 convs, so outputs are not trivially zero), written as the original
// layout. `skip` leaves one tensor out; `reshape` gives one tensor a wrong
// first dimension (weights of another architecture); `nan` puts a NaN into
// one tensor (a diverged run's weights).
inline void WriteRandomWeights(const fs::path& path, unsigned seed = 1, const std::string& skip = "",
                               const std::string& reshape = "", const std::string& nan = "") {
  std::mt19937 rng(seed);
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::Create(path.string());
  const hid_t f = f_file.get();
  for (ParamShape p : CsrnetShapes()) {
    if (p.name == skip) continue;
    if (p.name == reshape) p.shape[0] *= 2;
    size_t n = 1;
    for (hsize_t d : p.shape) n *= d;
    const double fan_in = p.shape.size() == 4 ? double(p.shape[1] * p.shape[2] * p.shape[3]) : 1.0;
    std::normal_distribution<float> dist(0.0f, p.shape.size() == 4 ? float(std::sqrt(2.0 / fan_in)) : 0.01f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    if (p.name == "output_layer.bias") v[0] = 0.05f;  // a positive count on typical inputs
    if (p.name == nan) v[n / 2] = std::numeric_limits<float>::quiet_NaN();
    h5::WriteFloats(f, p.name, v.data(), p.shape);
  }
}

// WriteRandomWeights(seed) written once per test executable and kept until it
// exits: the shared weights of a test file's cases.
inline const fs::path& SharedRandomWeights(unsigned seed) {
  static TempDir dir;
  static std::map<unsigned, fs::path> written;
  auto it = written.find(seed);
  if (it == written.end()) {
    const fs::path path = dir / ("weights_" + std::to_string(seed) + ".h5");
    WriteRandomWeights(path, seed);
    it = written.emplace(seed, path).first;
  }
  return it->second;
}

// A dark noisy RGB picture with bright blobs, deterministic from `seed`.
inline cv::Mat CrowdImage(int w, int h, unsigned seed) {
  cv::RNG rng(seed);
  cv::Mat img(h, w, CV_8UC3);
  rng.fill(img, cv::RNG::UNIFORM, cv::Scalar(10, 10, 10), cv::Scalar(90, 90, 90));
  for (int k = 0; k < w * h / 900; ++k) {
    cv::circle(img, {rng.uniform(0, w), rng.uniform(0, h)}, rng.uniform(2, 6),
               cv::Scalar(rng.uniform(150, 255), rng.uniform(120, 230), rng.uniform(100, 200)), cv::FILLED);
  }
  return img;
}

// Writes an RGB image as a PNG/JPEG (OpenCV writes BGR).
inline void WriteRgb(const fs::path& path, const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::imwrite(path.string(), bgr);
}

// One whole-image record: the target puts one unit per blob-ish point.
inline ShardRecord WholeRecord(int w, int h, unsigned seed, int index) {
  ShardRecord r;
  r.image = CrowdImage(w, h, seed);
  r.target = cv::Mat::zeros(h / 8, w / 8, CV_32F);
  std::mt19937 rng(seed);
  const int heads = 3 + static_cast<int>(rng() % 20);
  for (int k = 0; k < heads; ++k) r.target.at<float>(rng() % (h / 8), rng() % (w / 8)) += 1.0f;
  r.source = "IMG_" + std::to_string(index + 1) + ".jpg";
  r.box = {0, 0, w, h};
  r.count = heads;
  r.density_sum = heads;
  r.crop = -1;
  return r;
}

// A shard set with `n` whole test images of varied sizes (and, when asked, a
// train split with one crop) written with the real ShardWriter.
inline void WriteTestShards(const fs::path& dir, int n, bool with_train = false) {
  ShardSetWriter set(dir, with_train ? std::vector<std::string>{"test", "train"} : std::vector<std::string>{"test"}, 3,
                     1);
  for (int i = 0; i < n; ++i) set.split("test").Add(EncodeRecord(WholeRecord(96 + 8 * i, 72 + 5 * i, 100 + i, i), 1));
  if (with_train) {
    ShardRecord r = WholeRecord(64, 48, 7, 0);
    r.crop = 4;
    set.split("train").Add(EncodeRecord(r, 1));
  }
  set.Finish();
}

// A ShanghaiTech-layout part with `n` test images: images/IMG_i.jpg,
// ground_truth/GT_IMG_i.mat and gt_gen's ground_truth/IMG_i.h5 (`density`,
// one unit spread over a 3x3 block per head). Returns the annotation counts.
inline std::vector<int> WriteTinyDataset(const fs::path& root, int n) {
  const fs::path part = root / "part_A_final" / "test_data";
  fs::create_directories(part / "images");
  fs::create_directories(part / "ground_truth");
  std::vector<int> counts;
  for (int i = 1; i <= n; ++i) {
    const int w = 120 + 9 * i, h = 90 + 7 * i;
    WriteRgb(part / "images" / ("IMG_" + std::to_string(i) + ".jpg"), CrowdImage(w, h, 200 + i));
    std::mt19937 rng(300 + i);
    std::vector<std::array<double, 2>> points;
    cv::Mat density = cv::Mat::zeros(h, w, CV_32F);
    const int heads = 5 + i * 4;
    for (int k = 0; k < heads; ++k) {
      const int x = 1 + static_cast<int>(rng() % (w - 2)), y = 1 + static_cast<int>(rng() % (h - 2));
      points.push_back({x + 0.5, y + 0.5});
      density(cv::Rect(x - 1, y - 1, 3, 3)) += 1.0f / 9.0f;
    }
    WriteAnnotation((part / "ground_truth" / ("GT_IMG_" + std::to_string(i) + ".mat")).string(), points);
    h5::Lock h5_lock;
    const h5::Hid f_file = h5::Create((part / "ground_truth" / ("IMG_" + std::to_string(i) + ".h5")).string());
    const hid_t f = f_file.get();
    h5::WriteMat(f, "density", density);
    counts.push_back(heads);
  }
  return counts;
}

// The whole text of a file ("" when missing).
inline std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Lines of a text.
inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// A tool's exit status and what it printed on stdout and stderr.
struct ToolOutcome {
  int rc = -1;
  std::string out, err;
};

// Runs `run(out, err)`, which returns an exit code and writes stdout to the
// file `out` and stderr to `err` (both in `dir`), and reads both back.
template <typename Fn>
ToolOutcome Captured(const TempDir& dir, Fn&& run) {
  ToolOutcome o;
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  o.rc = run(out, err);
  o.out = Slurp(out);
  o.err = Slurp(err);
  return o;
}

// Runs the built `tool` with `args`, capturing stdout and stderr apart in `dir`.
inline ToolOutcome RunCaptured(const TempDir& dir, const std::string& tool, const std::string& args) {
  return Captured(dir, [&](const fs::path& out, const fs::path& err) {
    return Run(Tool(tool) + " " + args + " >" + out.string() + " 2>" + err.string());
  });
}

// The same through the tool's entry point in this process (test::RunInProcess:
// no process start-up); `entry` is csr::RunEvaluate, RunPredict, ...
template <typename Entry>
ToolOutcome RunCapturedHere(const TempDir& dir, Entry entry, const std::string& tool, const std::string& args) {
  return Captured(dir,
                  [&](const fs::path& out, const fs::path& err) { return RunInProcess(entry, tool, args, out, err); });
}

// True when Debian's Python has torch, h5py and cv2 (the PyTorch reference).
inline bool HavePythonTorch() { return Run(test::Python() + " -c 'import torch, h5py, cv2' >/dev/null 2>&1") == 0; }

}  // namespace csr::test
