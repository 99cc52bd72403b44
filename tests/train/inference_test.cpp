// Inference: preprocessing, tile planning, the receptive-field margin, tiled
// against whole-image inference, bf16 autocast.
#include "tests/train/train_test_util.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include "common/base/error.h"
#include "train/inference.h"
#include "train/torch_compat.h"

namespace csr {
namespace {

TEST_CASE("images are normalised with ImageNet statistics, mirrored on request") {
  cv::Mat rgb(2, 3, CV_8UC3, cv::Scalar(0, 0, 0));
  rgb.at<cv::Vec3b>(1, 0) = {255, 128, 0};
  const torch::Tensor t = ImageToTensor(rgb);
  REQUIRE(t.sizes() == std::vector<int64_t>{1, 3, 2, 3});
  CHECK(t[0][0][1][0].item<float>() == doctest::Approx((1.0 - 0.485) / 0.229));
  CHECK(t[0][1][1][0].item<float>() == doctest::Approx((128 / 255.0 - 0.456) / 0.224));
  CHECK(t[0][2][1][0].item<float>() == doctest::Approx(-0.406 / 0.225));
  CHECK(t[0][0][0][0].item<float>() == doctest::Approx(-0.485 / 0.229));
  std::vector<float> mirrored(3 * 2 * 3);
  NormalizeImage(rgb, true, mirrored.data());
  CHECK(mirrored[1 * 3 + 2] == doctest::Approx((1.0 - 0.485) / 0.229));  // channel 0, row 1, column 2
}

TEST_CASE("tiles cover every output cell once, start on the pooling grid and carry the margin") {
  for (auto [h, w, tile] : std::vector<std::tuple<int, int, int>>{
           {75, 101, 32}, {768, 1024, 256}, {37, 9, 8}, {2304, 3072, 1000}, {100, 100, 0}}) {
    const int margin = 144;
    const auto tiles = PlanTiles(h, w, tile, margin);
    std::vector<int> hits((h / 8) * (w / 8), 0);
    for (const Tile& t : tiles) {
      CHECK(t.y0 % 8 == 0);
      CHECK(t.x0 % 8 == 0);
      CHECK(t.y0 == std::max(0, 8 * t.oy0 - margin));
      CHECK(t.x0 == std::max(0, 8 * t.ox0 - margin));
      CHECK((t.y1 == h || t.y1 == 8 * t.oy1 + margin));
      CHECK((t.x1 == w || t.x1 == 8 * t.ox1 + margin));
      if (tile > 0) CHECK(8 * (t.oy1 - t.oy0) <= std::max(8, tile));
      for (int y = t.oy0; y < t.oy1; ++y) {
        for (int x = t.ox0; x < t.ox1; ++x) ++hits[y * (w / 8) + x];
      }
    }
    CHECK(std::count(hits.begin(), hits.end(), 1) == static_cast<long>(hits.size()));
  }
  CHECK(PlanTiles(100, 100, 0, 144).size() == 1);
  CHECK(PlanTiles(100, 100, 128, 144).size() == 1);
}

TEST_CASE("no input pixel beyond the receptive-field margin influences an output cell") {
  // The gradient of one output cell with respect to the input is zero
  // outside [8c - margin, 8c + 8 + margin) on both axes.
  CSRNet model(Backend::kB);
  test::HeInit(model, 21);
  const int margin = ReceptiveFieldMargin(Backend::kB);
  CHECK(margin == 144);
  CHECK(ReceptiveFieldMargin(Backend::kA) == 96);
  CHECK(ReceptiveFieldMargin(Backend::kD) == 240);
  const int size = 352, cell = 22;
  torch::manual_seed(1);
  torch::Tensor input = torch::randn({1, 3, size, size}).requires_grad_(true);
  model->forward(input)[0][0][cell][cell].backward();
  const torch::Tensor support = input.grad().abs().sum(std::vector<int64_t>{0, 1}) > 0;
  const torch::Tensor rows = support.any(1).nonzero(), cols = support.any(0).nonzero();
  REQUIRE(rows.numel() > 0);
  const int first = rows.min().item<int>(), last = rows.max().item<int>();
  MESSAGE("support rows " << first << ".." << last << " around cell pixels " << 8 * cell << ".." << 8 * cell + 7);
  CHECK(first >= 8 * cell - margin);
  CHECK(last < 8 * cell + 8 + margin);
  CHECK(cols.min().item<int>() >= 8 * cell - margin);
  CHECK(cols.max().item<int>() < 8 * cell + 8 + margin);
  CHECK(first < 8 * cell - margin + 24);  // the margin is not wildly generous either
}

TEST_CASE("tiled inference equals whole-image inference") {
  CSRNet model(Backend::kB);
  test::HeInit(model, 4);
  torch::manual_seed(2);
  const torch::Tensor image = torch::randn({1, 3, 300, 236});
  InferenceOptions whole;
  whole.tile = 0;
  InferenceOptions tiled;
  tiled.tile = 128;
  const torch::Tensor a = PredictDensity(model, image, whole);
  const torch::Tensor b = PredictDensity(model, image, tiled);
  REQUIRE(a.sizes() == std::vector<int64_t>{37, 29});
  REQUIRE(b.sizes() == a.sizes());
  const double count = a.sum().item<double>(), scale = a.abs().max().item<double>();
  MESSAGE("whole count " << count << ", tiled " << b.sum().item<double>());
  CHECK(scale > 1e-3);
  CHECK(std::abs(b.sum().item<double>() - count) <= 1e-4 * std::max(1.0, std::abs(count)));
  CHECK((a - b).abs().max().item<double>() <= 1e-4 * scale);
}

TEST_CASE("PredictDensity runs without autograd and restores the training flag") {
  CSRNet model;
  test::HeInit(model, 4);
  model->train();
  const torch::Tensor out = PredictDensity(model, torch::randn({1, 3, 40, 48}), InferenceOptions{});
  CHECK_FALSE(out.requires_grad());
  CHECK(model->is_training());
  CHECK(out.sizes() == std::vector<int64_t>{5, 6});
  CHECK(PredictDensity(model, torch::randn({1, 3, 7, 48}), InferenceOptions{}).numel() == 0);
}

TEST_CASE("bf16 autocast with channels-last stays close to fp32 and the guard restores the state") {
  CSRNet model;
  test::HeInit(model, 8);
  torch::manual_seed(3);
  const torch::Tensor image = torch::randn({1, 3, 64, 80});
  InferenceOptions fp32;
  const torch::Tensor a = PredictDensity(model, image, fp32);
  InferenceOptions bf16;
  bf16.precision = Precision::kBf16;
  PrepareModel(model, c10::Device(c10::kCPU), Precision::kBf16);
  CHECK(model->frontend[0]->as<torch::nn::Conv2d>()->weight.is_contiguous(at::MemoryFormat::ChannelsLast));
  const torch::Tensor b = PredictDensity(model, image, bf16);
  CHECK((b.scalar_type() == torch::kFloat32));
  const double rel = (a - b).abs().max().item<double>() / a.abs().max().item<double>();
  MESSAGE("bf16 vs fp32 relative max difference " << rel);
  CHECK(rel < 0.1);
  CHECK_FALSE(compat::AutocastEnabled(c10::DeviceType::CPU));
  {
    AutocastGuard guard(Precision::kBf16, c10::Device(c10::kCPU));
    CHECK(compat::AutocastEnabled(c10::DeviceType::CPU));
    CHECK((model->forward(image.contiguous(at::MemoryFormat::ChannelsLast)).scalar_type() == torch::kBFloat16));
  }
  CHECK_FALSE(compat::AutocastEnabled(c10::DeviceType::CPU));
  CHECK(ParsePrecision("bf16") == Precision::kBf16);
  CHECK_THROWS_AS(ParsePrecision("fp8"), UsageError);
  CHECK(ResolveDevice(ParseDeviceChoice("cpu")).is_cpu());
  CHECK_THROWS_AS(ParseDeviceChoice("tpu"), UsageError);
}

TEST_CASE("device choices: every spelling round-trips, bad ones name the option") {
  for (const char* text : {"auto", "cpu", "cuda", "cuda:0", "cuda:127"}) {
    CAPTURE(text);
    CHECK(DeviceChoiceName(ParseDeviceChoice(text)) == text);
  }
  CHECK(ParseDeviceChoice("cuda:3").index == 3);
  CHECK(ParseDeviceChoice("cuda").index == -1);
  for (const char* text : {"", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "cudax", "cuda:1234", "gpu"}) {
    CAPTURE(text);
    CHECK_THROWS_AS(ParseDeviceChoice(text, "--device"), UsageError);
  }
  try {
    ParseDeviceChoice("cuda:200");
    FAIL("no error");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).find("out of range (0..127)") != std::string::npos);
  }
  if (!torch::cuda::is_available()) {
    CHECK_THROWS_AS(ResolveDevice(ParseDeviceChoice("cuda:1")), UsageError);
    CHECK(ResolveDevice(DeviceChoice{}).is_cpu());  // auto without a GPU
  }
}

}  // namespace
}  // namespace csr
