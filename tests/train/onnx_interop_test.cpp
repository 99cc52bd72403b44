// The exported ONNX model against this project's LibTorch forward pass: the
// same counts (1e-4 relative) on the reference vectors and on real images,
// from .h5 and from .pt weights (tools/export_onnx.py, OpenCV DNN).
// LibTorch first (tests/train/torch_doctest.h): its CHECK macros clash with doctest's.
#include "tests/train/torch_doctest.h"
#include "train/model.h"

#include <cmath>

#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "deploy/predictor.h"
#include "tests/deploy/onnx_test_util.h"
#include "tests/test_skip.h"
#include "tests/train/predict_test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

ModelSettings Settings(const fs::path& weights, Engine engine) {
  ModelSettings s;
  s.weights = weights.string();
  s.engine = engine;
  s.tile = 0;
  s.threads = 2;
  s.device = ParseDeviceChoice("cpu");
  return s;
}

TEST_CASE("ONNX and LibTorch give the same counts on the reference vectors and real images" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(!test::SharedData().empty(), test::kNeedShared, "../shared/data is absent");
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");
  TempDir dir;
  const fs::path h5 = test::SharedData() / "reference" / "csrnet_weights.h5";
  // The same weights as this project's .pt, exported through the LibTorch archive.
  const fs::path pt = dir / "model.pt";
  {
    CSRNet model = LoadModel(h5.string());
    SaveModelPt(model, pt.string(), ModelFileInfo{});
  }
  const fs::path from_h5 = dir / "from_h5.onnx", from_pt = dir / "from_pt.onnx";
  REQUIRE(test::ExportOnnx(h5, from_h5, dir / "h5.log") == 0);
  REQUIRE(test::ExportOnnx(pt, from_pt, dir / "pt.log") == 0);
  CHECK(test::Slurp(dir / "pt.log").find("(LibTorch .pt, CSRNet-B)") != std::string::npos);

  Predictor torch_h5(Settings(h5, Engine::kLibTorch));
  Predictor onnx_h5(Settings(from_h5, Engine::kOnnx));
  Predictor onnx_pt(Settings(from_pt, Engine::kAuto));  // not HDF5, not a zip: ONNX
  CHECK(onnx_pt.Describe().find("ONNX") != std::string::npos);
  CHECK(onnx_h5.margin() == torch_h5.margin());

  auto same = [&](const cv::Mat& want, const cv::Mat& got, const std::string& what) {
    INFO(what);
    REQUIRE(want.size() == got.size());
    const double a = cv::sum(want)[0], b = cv::sum(got)[0];
    INFO("LibTorch ", a, ", ONNX ", b);
    CHECK(std::abs(a - b) <= 1e-4 * std::abs(a));
  };

  const fs::path ref = test::SharedData() / "reference" / "csrnet_forward.h5";
  std::vector<hsize_t> shape;
  std::vector<float> input;
  {
    h5::Lock lock;
    const h5::Hid file = h5::OpenRead(ref.string());
    input = h5::ReadFloats(file.get(), "input", ref.string(), &shape);
  }
  const int h = static_cast<int>(shape[2]), w = static_cast<int>(shape[3]);
  for (hsize_t i = 0; i < shape[0]; ++i) {
    const float* chw = input.data() + i * 3 * h * w;
    const cv::Mat want = torch_h5.DensityNormalized(chw, h, w);
    same(want, onnx_h5.DensityNormalized(chw, h, w), "reference input " + std::to_string(i) + " (.h5 export)");
    same(want, onnx_pt.DensityNormalized(chw, h, w), "reference input " + std::to_string(i) + " (.pt export)");
  }
  for (const char* image : {"part_A_final/test_data/images/IMG_34.jpg", "part_A_final/train_data/images/IMG_40.jpg",
                            "part_A_final/train_data/images/IMG_135.jpg", "part_B_final/test_data/images/IMG_1.jpg"}) {
    const cv::Mat rgb = ReadImageRGB((test::SharedData() / "ShanghaiTech" / image).string());
    same(torch_h5.Density(rgb), onnx_h5.Density(rgb), image);
  }
}

TEST_CASE("export_onnx.py refuses a --batch-norm checkpoint in one line, naming the folded files" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::HaveOnnxExport(), test::kNeedPython,
                  "Debian's python3-torch/h5py/onnx not installed (scripts/deps.sh test)");
  TempDir dir;
  const fs::path pt = dir / "checkpoint_like.pt";
  {
    CSRNet model(Backend::kB, /*batch_norm=*/true);
    SaveModelPt(model, pt.string(), ModelFileInfo{});
  }
  CHECK(test::ExportOnnx(pt, dir / "x.onnx", dir / "bn.log") == 1);
  const std::string log = test::Slurp(dir / "bn.log");
  INFO(log);
  CHECK(log.find(pt.string()) != std::string::npos);
  CHECK(log.find("model_best.pt or model_best.h5") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "x.onnx"));
}

}  // namespace
}  // namespace csr
