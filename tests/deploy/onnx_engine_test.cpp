// The predictor without LibTorch: the ONNX engine (OpenCV DNN) against
// PyTorch's own forward pass, tiling, the margin read off the graph, the
// predict tool's outputs, and models of other networks. Runs in both builds
// (with and without -DCSR_BUILD_TRAIN).
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "common/base/error.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "deploy/engine.h"
#include "deploy/predictor.h"
#include "deploy/tiling.h"
#include "tests/deploy/onnx_test_util.h"
#include "tests/test_skip.h"
#include "tests/train/predict_test_util.h"

namespace csr {
namespace {

using test::TempDir;

ModelSettings OnnxSettings(const fs::path& model, int tile = 1024) {
  ModelSettings s;
  s.weights = model.string();
  s.engine = Engine::kOnnx;
  s.tile = tile;
  s.threads = 2;
  return s;
}

// The reference weights exported once for the file (empty when they or the
// exporter are missing).
const fs::path& ReferenceOnnx() {
  static TempDir dir;
  static const fs::path path = [] {
    const fs::path weights = test::SharedData() / "reference" / "csrnet_weights.h5";
    if (test::SharedData().empty() || !test::HaveOnnxExport()) return fs::path();
    const fs::path out = dir / "reference.onnx";
    return test::ExportOnnx(weights, out, dir / "export.log") == 0 ? out : fs::path();
  }();
  return path;
}

#define CSR_SKIP_UNLESS_REFERENCE_ONNX()                                                       \
  CSR_SKIP_UNLESS(!test::SharedData().empty(), test::kNeedShared, "../shared/data is absent"); \
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,                                   \
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");    \
  REQUIRE_MESSAGE(!ReferenceOnnx().empty(), "tools/export_onnx.py failed on the reference weights")

TEST_CASE("ChainMargin is the reach of a layer chain beyond an output cell's own block") {
  CHECK(ChainMargin({}) == 0);
  CHECK(ChainMargin({{3, 1, 1}}) == 8);  // one pixel each side, rounded up to 8
  CHECK(ChainMargin({{1, 1, 1}}) == 0);  // a 1 x 1 conv sees only its own pixel
  CHECK(ChainMargin({{2, 2, 1}}) == 0);  // a pool sees exactly its own block
  // CSRNet-B: 8 * (3 + 12) + 18 = 138 pixels, 144 rounded.
  std::vector<LayerGeometry> chain;
  for (int convs : {2, 2, 3}) {
    for (int i = 0; i < convs; ++i) chain.push_back({3, 1, 1});
    chain.push_back({2, 2, 1});
  }
  for (int i = 0; i < 3; ++i) chain.push_back({3, 1, 1});
  std::vector<LayerGeometry> b = chain;
  for (int i = 0; i < 6; ++i) b.push_back({3, 1, 2});
  b.push_back({1, 1, 1});
  CHECK(ChainMargin(b) == 144);
}

TEST_CASE("StitchTiles refuses a window map smaller than the window's cells") {
  const std::vector<Tile> tiles = PlanTiles(64, 64, 0, 0);
  CHECK_THROWS_WITH_AS(StitchTiles(64, 64, tiles, [](const Tile&) { return cv::Mat(cv::Mat::zeros(4, 8, CV_32F)); }),
                       doctest::Contains("is this a CSRNet density model?"), Error);
}

TEST_CASE("the onnx engine refuses unreadable files and options it cannot honour, in one line") {
  TempDir dir;
  const fs::path junk = dir / "junk.onnx";
  { std::ofstream(junk) << "this is not a protobuf"; }
  const fs::path empty = dir / "empty.onnx";
  { std::ofstream f(empty); }
  const cv::Mat rgb = test::CrowdImage(64, 64, 1);
  test::WriteRgb(dir / "a.png", rgb);
  const std::string img = (dir / "a.png").string();

  test::ToolOutcome o = test::RunCaptured(dir, "predict", "--engine onnx --weights " + junk.string() + " " + img);
  CHECK(o.rc == 1);
  CHECK(o.err.find(junk.string() + ": not an ONNX model OpenCV's DNN module can read") != std::string::npos);
  CHECK(test::Lines(o.err).size() == 1);
  o = test::RunCaptured(dir, "predict", "--engine onnx --weights " + (dir / "none.onnx").string() + " " + img);
  CHECK(o.rc == 1);
  CHECK(o.err.find("none.onnx: no such model file") != std::string::npos);
  // auto: not HDF5, not a zip: the onnx engine, which names what is wrong.
  o = test::RunCaptured(dir, "predict", "--weights " + junk.string() + " " + img);
  CHECK(o.rc == 1);
  CHECK(o.err.find("not an ONNX model") != std::string::npos);
  o = test::RunCaptured(dir, "predict", "--weights " + empty.string() + " " + img);
  CHECK(o.rc == 1);
  CHECK(o.err.find("empty.onnx: too short to be a model file") != std::string::npos);
  o = test::RunCaptured(dir, "predict", "--engine onnx --precision bf16 --weights " + junk.string() + " " + img);
  CHECK(o.rc == 2);
  CHECK(o.err.find("--precision: the onnx engine runs fp32 only") != std::string::npos);
  o = test::RunCaptured(dir, "predict", "--engine onnx --device cuda --weights " + junk.string() + " " + img);
  CHECK(o.rc == 2);
  CHECK(o.err.find("--device: the onnx engine runs on the CPU") != std::string::npos);
  o = test::RunCaptured(dir, "predict", "--engine tensorrt --weights " + junk.string() + " " + img);
  CHECK(o.rc == 2);
  CHECK(o.err.find("--engine") != std::string::npos);
}

TEST_CASE("without LibTorch, LibTorch weights are refused with the way to export them" *
          doctest::skip(HaveTorchEngine())) {
  TempDir dir;
  const fs::path weights = dir / "w.h5";
  test::WriteRandomWeights(weights, 1);
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 64, 1));
  const test::ToolOutcome o =
      test::RunCaptured(dir, "predict", "--weights " + weights.string() + " " + (dir / "a.png").string());
  CHECK(o.rc == 2);
  CHECK(o.err.find("this build has no LibTorch") != std::string::npos);
  CHECK(o.err.find("tools/export_onnx.py") != std::string::npos);
}

TEST_CASE("the exported reference model gives PyTorch's forward pass" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS_REFERENCE_ONNX();
  const fs::path ref = test::SharedData() / "reference" / "csrnet_forward.h5";
  h5::Lock lock;
  const h5::Hid file = h5::OpenRead(ref.string());
  std::vector<hsize_t> in_shape, out_shape;
  const std::vector<float> input = h5::ReadFloats(file.get(), "input", ref.string(), &in_shape);
  const std::vector<float> output = h5::ReadFloats(file.get(), "output", ref.string(), &out_shape);
  REQUIRE(in_shape.size() == 4);
  const int n = static_cast<int>(in_shape[0]), h = static_cast<int>(in_shape[2]), w = static_cast<int>(in_shape[3]);
  const int oh = static_cast<int>(out_shape[2]), ow = static_cast<int>(out_shape[3]);
  Predictor predictor(OnnxSettings(ReferenceOnnx()));
  CHECK(predictor.margin() == 144);
  for (int i = 0; i < n; ++i) {
    const cv::Mat density = predictor.DensityNormalized(input.data() + static_cast<size_t>(i) * 3 * h * w, h, w);
    REQUIRE(density.rows == oh);
    REQUIRE(density.cols == ow);
    double want = 0.0, max_diff = 0.0, max_abs = 0.0;
    for (int y = 0; y < oh; ++y) {
      for (int x = 0; x < ow; ++x) {
        const float r = output[(static_cast<size_t>(i) * oh + y) * ow + x];
        want += r;
        max_abs = std::max(max_abs, std::abs(double(r)));
        max_diff = std::max(max_diff, std::abs(double(density.at<float>(y, x)) - r));
      }
    }
    const double got = cv::sum(density)[0];
    INFO("image ", i, ": onnx ", got, ", PyTorch ", want);
    CHECK(std::abs(got - want) <= 1e-4 * std::abs(want));
    CHECK(max_diff <= 1e-4 * max_abs);
  }
}

TEST_CASE("onnx: tiled inference equals whole-image inference on a real image" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS_REFERENCE_ONNX();
  // The top-left 512 x 392 of a Part B image: 2 x 2 tiles of 256 (margin 144).
  const cv::Mat rgb =
      ReadImageRGB((test::SharedData() / "ShanghaiTech/part_B_final/test_data/images/IMG_1.jpg").string())(
          cv::Rect(0, 0, 512, 392))
          .clone();
  Predictor whole(OnnxSettings(ReferenceOnnx(), 0));
  Predictor tiled(OnnxSettings(ReferenceOnnx(), 256));
  const cv::Mat a = whole.Density(rgb), b = tiled.Density(rgb);
  REQUIRE(a.size() == b.size());
  CHECK(a.rows == 392 / 8);
  double max_abs = 0.0;
  cv::minMaxLoc(cv::abs(a), nullptr, &max_abs);
  CHECK(cv::norm(a, b, cv::NORM_INF) <= 1e-3 * max_abs);
  CHECK(std::abs(cv::sum(a)[0] - cv::sum(b)[0]) <= 1e-3 * std::abs(cv::sum(a)[0]));
}

TEST_CASE("the margin is read off the exported graph for every back end" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");
  TempDir dir;
  // One Python process exports all four (the exporter's own function, as its CLI calls it).
  REQUIRE(test::RunPython(dir.path(), "make",
                          "import torch\n"
                          "from csrnet_pytorch import CSRNet\n"
                          "from export_onnx import export\n"
                          "torch.manual_seed(1)\n"
                          "for b in 'ABCD':\n"
                          "    export(CSRNet(b).eval(), b, 'random', '" +
                              (dir / "m").string() + "' + b + '.onnx', 13)\n") == 0);
  // 8 * (3 + sum of the back end's dilations) + 18, rounded up to 8.
  const std::map<std::string, int> want = {{"A", 96}, {"B", 144}, {"C", 192}, {"D", 240}};
  for (const auto& [backend, margin] : want) {
    Predictor p(OnnxSettings(dir / ("m" + backend + ".onnx")));
    CHECK_MESSAGE(p.margin() == margin, "back end ", backend);
  }
}

TEST_CASE("predict --engine onnx writes counts, heatmaps, density files and video counts" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS_REFERENCE_ONNX();
  TempDir dir;
  const fs::path img = test::SharedData() / "ShanghaiTech/part_A_final/test_data/images/IMG_34.jpg";
  test::ToolOutcome o = test::RunCaptured(
      dir, "predict",
      "--weights " + ReferenceOnnx().string() + " --out " + (dir / "out").string() + " " + img.string());
  REQUIRE(o.rc == 0);
  const std::vector<std::string> lines = test::Lines(o.out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind(img.string() + "\t", 0) == 0);
  CHECK(o.err.find("(ONNX, 17 convolutions, OpenCV") != std::string::npos);
  CHECK(fs::file_size(dir / "out" / "IMG_34_heatmap.png") > 1000);
  CHECK(fs::file_size(dir / "out" / "IMG_34_density.h5") > 1000);
  Predictor predictor(OnnxSettings(ReferenceOnnx()));
  const double count = cv::sum(predictor.Density(ReadImageRGB(img.string())))[0];
  CHECK(std::stod(lines[0].substr(lines[0].find('\t') + 1)) == doctest::Approx(count).epsilon(1e-6));

  // A three-frame video: one CSV line per frame.
  const fs::path video = dir / "v.avi";
  {
    cv::VideoWriter writer(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 5.0, {96, 64});
    REQUIRE(writer.isOpened());
    for (int k = 0; k < 3; ++k) {
      cv::Mat bgr;
      cv::cvtColor(test::CrowdImage(96, 64, k + 1), bgr, cv::COLOR_RGB2BGR);
      writer.write(bgr);
    }
  }
  o = test::RunCaptured(dir, "predict", "--weights " + ReferenceOnnx().string() + " --video " + video.string());
  REQUIRE(o.rc == 0);
  CHECK(test::Lines(o.out).size() == 4);  // header + 3 frames
}

TEST_CASE("ONNX models of other networks are refused in one line naming the file" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");
  TempDir dir;
  const std::string d = dir.path().string();
  REQUIRE(
      test::RunPython(dir.path(), "make",
                      "import torch\nfrom torch import nn\nfrom export_onnx import legacy_exporter\n"
                      "def save(m, x, name, dyn=True):\n"
                      "    axes = {'x': {2: 'h', 3: 'w'}} if dyn else None\n"
                      "    torch.onnx.export(m.eval(), x, '" +
                          d +
                          "/' + name, input_names=['x'], "
                          "opset_version=13, dynamic_axes=axes, **legacy_exporter())\n"
                          "save(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(8)), "
                          "torch.zeros(1, 1, 64, 64), 'gray.onnx')\n"
                          "save(nn.Conv2d(3, 1, 3, padding=1), torch.zeros(1, 3, 64, 64), 'fullres.onnx')\n"
                          "save(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.MaxPool2d(8)), "
                          "torch.zeros(1, 3, 64, 64), 'twomaps.onnx')\n"
                          "save(nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 56 * 56, 10)), "
                          "torch.zeros(1, 3, 224, 224), 'classifier.onnx', dyn=False)\n") == 0);
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 64, 1));
  for (const std::string name : {"gray.onnx", "fullres.onnx", "twomaps.onnx", "classifier.onnx"}) {
    const test::ToolOutcome o =
        test::RunCaptured(dir, "predict", "--weights " + d + "/" + name + " " + (dir / "a.png").string());
    INFO(name, ": ", o.err);
    CHECK(o.rc == 1);
    CHECK(o.err.find(name + ": not a CSRNet density model") != std::string::npos);
    CHECK(test::Lines(o.err).size() == 1);
  }
}

}  // namespace
}  // namespace csr
