// CSRNet model: architecture, the PyTorch forward vector, weight files.
#include "tests/train/train_test_util.h"

#include <fstream>
#include <limits>

#include "common/base/error.h"
#include "common/io/h5.h"
#include "common/io/zip_check.h"
#include "tests/test_expect.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/model.h"

#include <torch/nn/modules/batchnorm.h>

namespace csr {
namespace {

using test::TempDir;

using test::ErrorOf;

bool SameWeights(CSRNet& a, CSRNet& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  if (pa.size() != pb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  return true;
}

// Writes the model's parameters to an HDF5 file in the original layout,
// optionally renaming/skipping/reshaping one of them.
void WriteH5(CSRNet& model, const std::string& path, const std::string& skip = "", const std::string& reshape = "",
             const std::string& prefix_from = "", const std::string& prefix_to = "") {
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::Create(path);
  const hid_t f = f_file.get();
  for (const auto& item : model->named_parameters()) {
    std::string name = item.key();
    if (name == skip) continue;
    if (!prefix_from.empty()) {
      if (name.rfind(prefix_from, 0) != 0) continue;
      name = prefix_to + name.substr(prefix_from.size());
    }
    torch::Tensor t = item.value().detach().contiguous();
    std::vector<hsize_t> shape(t.sizes().begin(), t.sizes().end());
    if (item.key() == reshape) {
      t = torch::zeros({t.numel() + 1});
      shape = {static_cast<hsize_t>(t.numel())};
    }
    h5::WriteFloats(f, name, t.data_ptr<float>(), shape);
  }
}

TEST_CASE("CSRNet has the original parameter names and 16,263,489 parameters") {
  for (Backend b : {Backend::kA, Backend::kB, Backend::kC, Backend::kD}) {
    CSRNet model(b);
    CHECK(ParameterCount(*model) == 16263489);
    std::vector<std::string> names;
    for (const auto& item : model->named_parameters()) names.push_back(item.key());
    std::vector<std::string> expected;
    for (int i : {0, 2, 5, 7, 10, 12, 14, 17, 19, 21}) {
      expected.push_back("frontend." + std::to_string(i) + ".weight");
      expected.push_back("frontend." + std::to_string(i) + ".bias");
    }
    for (int i : {0, 2, 4, 6, 8, 10}) {
      expected.push_back("backend." + std::to_string(i) + ".weight");
      expected.push_back("backend." + std::to_string(i) + ".bias");
    }
    expected.push_back("output_layer.weight");
    expected.push_back("output_layer.bias");
    CHECK(names == expected);
  }
}

TEST_CASE("back ends use the paper's dilations and the output is floor(H/8) x floor(W/8)") {
  CHECK(BackendDilations(Backend::kA) == std::vector<int>{1, 1, 1, 1, 1, 1});
  CHECK(BackendDilations(Backend::kC) == std::vector<int>{2, 2, 2, 4, 4, 4});
  CHECK(ParseBackend("D") == Backend::kD);
  CHECK_THROWS_AS(ParseBackend("E"), UsageError);
  CSRNet model(Backend::kC);
  CHECK(model->backend[6]->as<torch::nn::Conv2d>()->options.dilation()->at(0) == 4);
  torch::NoGradGuard no_grad;
  CHECK(model->forward(torch::zeros({2, 3, 75, 101})).sizes() == std::vector<int64_t>{2, 1, 9, 12});
  CHECK(model->forward(torch::zeros({1, 3, 16, 31})).sizes() == std::vector<int64_t>{1, 1, 2, 3});
}

TEST_CASE("--init he: hidden convolutions N(0, 2 / fan_in), the output N(0, 0.01), biases 0") {
  torch::manual_seed(3);
  CSRNet model;
  InitWeights(model, Init::kHe);
  const torch::Tensor first = model->frontend[0]->as<torch::nn::Conv2d>()->weight;  // fan-in 27
  CHECK(first.std().item<double>() == doctest::Approx(std::sqrt(2.0 / 27)).epsilon(0.1));
  const torch::Tensor deep = model->backend[0]->as<torch::nn::Conv2d>()->weight;  // fan-in 4608
  CHECK(deep.std().item<double>() == doctest::Approx(std::sqrt(2.0 / 4608)).epsilon(0.02));
  CHECK(model->output_layer->weight.std().item<double>() == doctest::Approx(0.01).epsilon(0.3));
  CHECK(model->backend[0]->as<torch::nn::Conv2d>()->bias.abs().max().item<double>() == 0.0);
  // The signal keeps its scale through the network (N(0, 0.01) shrinks it by ~1e-9 in std).
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 3, 64, 64});
  const double he_out = model->forward(x).std().item<double>();
  InitWeights(model, Init::kNormal);
  const double normal_out = model->forward(x).std().item<double>();
  CHECK(he_out > 1e-3);
  CHECK(normal_out < 1e-6 * he_out);
}

TEST_CASE("the initialisation is the original's: conv weights N(0, 0.01), biases 0") {
  torch::manual_seed(3);
  CSRNet model;
  InitWeights(model);
  const torch::Tensor w = model->backend[0]->as<torch::nn::Conv2d>()->weight;
  CHECK(std::abs(w.mean().item<double>()) < 1e-3);
  CHECK(w.std().item<double>() == doctest::Approx(0.01).epsilon(0.02));
  CHECK(model->frontend[0]->as<torch::nn::Conv2d>()->bias.abs().max().item<double>() == 0.0);
}

TEST_CASE("the forward pass matches PyTorch's reference vector within 1e-4" * doctest::test_suite("optional")) {
  const auto data = test::SharedData();
  CSR_SKIP_UNLESS(!data.empty(), test::kNeedShared, "../shared/data absent");
  const std::string weights = (data / "reference/csrnet_weights.h5").string();
  const std::string forward = (data / "reference/csrnet_forward.h5").string();
  CSRNet model;
  LoadWeightsH5(model, weights);
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::OpenRead(forward);
  const hid_t f = f_file.get();
  std::vector<hsize_t> in_shape, out_shape;
  std::vector<float> in = h5::ReadFloats(f, "input", forward, &in_shape);
  std::vector<float> out = h5::ReadFloats(f, "output", forward, &out_shape);
  REQUIRE(in_shape == std::vector<hsize_t>{2, 3, 75, 101});
  REQUIRE(out_shape == std::vector<hsize_t>{2, 1, 9, 12});
  const torch::Tensor input = torch::from_blob(in.data(), {2, 3, 75, 101}).clone();
  const torch::Tensor expected = torch::from_blob(out.data(), {2, 1, 9, 12}).clone();
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor got = model->forward(input);
  REQUIRE(got.sizes() == expected.sizes());
  const double diff = (got - expected).abs().max().item<double>();
  MESSAGE("max |diff| = " << diff << ", max |expected| = " << expected.abs().max().item<double>());
  CHECK(diff <= 1e-4);
  CHECK(expected.abs().max().item<double>() > 1e-3);  // the vector is not trivially zero
}

TEST_CASE("weights round-trip through the original HDF5 layout and the .pt model file") {
  TempDir tmp;
  CSRNet a(Backend::kC);
  test::HeInit(a, 11);
  const std::string h5path = (tmp / "w.h5").string(), ptpath = (tmp / "w.pt").string();
  SaveWeightsH5(a, h5path);
  SaveModelPt(a, ptpath, {Backend::kC, 7, 12.5});
  CHECK(IsHdf5File(h5path));
  CHECK_FALSE(IsHdf5File(ptpath));

  CSRNet b(Backend::kC);
  LoadWeightsH5(b, h5path);
  CHECK(SameWeights(a, b));
  CHECK(ReadWeightsBackend(h5path) == Backend::kC);

  CSRNet c = LoadModel(ptpath);
  CHECK(c->backend_variant() == Backend::kC);
  CHECK(SameWeights(a, c));
  torch::serialize::InputArchive archive = OpenArchive(ptpath);
  const ModelFileInfo info = ReadModelInfo(archive, ptpath);
  CHECK(info.epoch == 7);
  CHECK(info.mae == 12.5);

  // Channels-last weights are written in the original OIHW order.
  SetChannelsLast(a, true);
  SaveWeightsH5(a, h5path);
  CSRNet d(Backend::kC);
  LoadWeights(d, h5path);
  CHECK(SameWeights(a, d));
}

// Batch normalisation with statistics far from the identity, so that a fold
// that ignored any of them would change the output.
void RandomiseBatchNorm(CSRNet& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& module : model->modules(/*include_self=*/false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0.0, 0.2);
      bn->running_mean.normal_(0.0, 0.2);
      bn->running_var.uniform_(0.3, 3.0);
    }
  }
}

TEST_CASE("--batch-norm's network folds into the plain CSRNet it computes in eval mode; its .pt loads folded") {
  TempDir tmp;
  CSRNet bn(Backend::kB, /*batch_norm=*/true);
  test::HeInit(bn, 5);
  RandomiseBatchNorm(bn, 6);
  CHECK(bn->batch_norm());
  // The original code's make_layers(batch_norm=True) names: conv, bn, relu.
  const auto names = bn->named_parameters();
  CHECK(names.contains("frontend.0.weight"));
  CHECK(names.contains("frontend.1.weight"));
  CHECK(names.contains("frontend.3.weight"));
  CHECK(names.contains("backend.1.bias"));
  CHECK(ParameterCount(*bn) == 16263489 + 2 * (2 * 64 + 2 * 128 + 3 * 256 + 3 * 512 + 3 * 512 + 256 + 128 + 64));

  bn->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 3, 64, 80});
  const torch::Tensor want = bn->forward(x);
  CSRNet plain = FoldBatchNorm(bn);
  CHECK_FALSE(plain->batch_norm());
  const torch::Tensor got = plain->forward(x);
  const double scale = want.abs().max().item<double>();
  REQUIRE(scale > 1e-3);
  CHECK((got - want).abs().max().item<double>() <= 1e-4 * scale);

  // Its checkpoint-style .pt: LoadModel and LoadWeights give the folded
  // network; a batch-normalised model reads it whole, running statistics too.
  const std::string pt = (tmp / "bn.pt").string();
  SaveModelPt(bn, pt, {});
  CSRNet loaded = LoadModel(pt);
  CHECK_FALSE(loaded->batch_norm());
  CHECK(SameWeights(loaded, plain));
  CSRNet into;
  LoadWeights(into, pt);
  CHECK(SameWeights(into, plain));
  CSRNet again(Backend::kB, /*batch_norm=*/true);
  LoadWeights(again, pt);
  CHECK(SameWeights(again, bn));
  auto buffers = bn->named_buffers();
  for (const auto& item : again->named_buffers()) CHECK(torch::equal(item.value(), buffers[item.key()]));

  // The training-mode output (batch statistics) is another function: the
  // comparison above can tell the two apart.
  bn->train();
  CHECK((bn->forward(x) - want).abs().max().item<double>() > 1e-2 * scale);

  // A plain file into a batch-normalised model, and corrupt statistics.
  const std::string plain_pt = (tmp / "plain.pt").string();
  SaveModelPt(plain, plain_pt, {});
  std::string msg = ErrorOf([&] { LoadWeights(again, plain_pt); });
  CHECK(msg.find(plain_pt) != std::string::npos);
  CHECK(msg.find("without batch normalisation") != std::string::npos);
  bn->frontend[1]->as<torch::nn::BatchNorm2d>()->running_var[3] = -1.0;
  SaveModelPt(bn, pt, {});
  msg = ErrorOf([&] { LoadModel(pt); });
  CHECK(msg.find("frontend.1.running_var") != std::string::npos);
  CHECK(msg.find("negative variances") != std::string::npos);
}

TEST_CASE("the written .h5 has exactly one float32 OIHW dataset per parameter") {
  TempDir tmp;
  CSRNet a;
  test::HeInit(a, 5);
  SaveWeightsH5(a, (tmp / "w.h5").string());
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::OpenRead((tmp / "w.h5").string());
  const hid_t f = f_file.get();
  CHECK(h5::ListNames(f, "w.h5").size() == 34);
  std::vector<hsize_t> shape;
  std::vector<float> w = h5::ReadFloats(f, "frontend.5.weight", "w.h5", &shape);
  CHECK(shape == std::vector<hsize_t>{128, 64, 3, 3});
  const torch::Tensor ref = a->frontend[5]->as<torch::nn::Conv2d>()->weight;
  CHECK(w[1 * 64 * 9 + 2 * 9 + 4] == ref[1][2][1][1].item<float>());
}

TEST_CASE("bad weight files are refused with the file and the tensor named") {
  TempDir tmp;
  CSRNet a;
  test::HeInit(a, 5);
  const std::string missing = (tmp / "missing.h5").string();
  WriteH5(a, missing, /*skip=*/"backend.4.weight");
  std::string msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, missing);
  });
  CHECK(msg.find("missing.h5") != std::string::npos);
  CHECK(msg.find("backend.4.weight") != std::string::npos);

  const std::string shaped = (tmp / "shaped.h5").string();
  WriteH5(a, shaped, "", /*reshape=*/"frontend.0.bias");
  msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, shaped);
  });
  CHECK(msg.find("frontend.0.bias") != std::string::npos);
  CHECK(msg.find("shape") != std::string::npos);

  const std::string garbage = (tmp / "garbage.pt").string();
  std::ofstream(garbage) << "not a model";
  msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, garbage);
  });
  CHECK(msg.find("garbage.pt") != std::string::npos);

  // A .pt truncated in the middle.
  const std::string full = (tmp / "full.pt").string(), cut = (tmp / "cut.pt").string();
  SaveModelPt(a, full, {});
  fs::copy_file(full, cut);
  fs::resize_file(cut, fs::file_size(full) / 2);
  msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, cut);
  });
  CHECK(msg.find("cut.pt") != std::string::npos);

  msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, (tmp / "nope.h5").string());
  });
  CHECK(msg.find("no such file") != std::string::npos);
}

TEST_CASE("--vgg16 weights with torchvision names fill the front end only") {
  TempDir tmp;
  CSRNet source;
  test::HeInit(source, 9);
  const std::string vgg = (tmp / "vgg16.h5").string();
  WriteH5(source, vgg, "", "", "frontend.", "features.");
  CSRNet model;
  InitWeights(model);
  const torch::Tensor backend_before = model->backend[0]->as<torch::nn::Conv2d>()->weight.clone();
  LoadVgg16H5(model, vgg);
  for (const auto& item : source->frontend->named_parameters()) {
    CHECK(torch::equal(item.value(), model->frontend->named_parameters()[item.key()]));
  }
  CHECK(torch::equal(backend_before, model->backend[0]->as<torch::nn::Conv2d>()->weight));

  const std::string partial = (tmp / "partial.h5").string();
  {
    h5::Lock h5_lock;
    const h5::Hid f_file = h5::Create(partial);
    const hid_t f = f_file.get();
    const torch::Tensor w = source->frontend[0]->as<torch::nn::Conv2d>()->weight.contiguous();
    h5::WriteFloats(f, "features.0.weight", w.data_ptr<float>(), {64, 3, 3, 3});
  }
  const std::string msg = ErrorOf([&] { LoadVgg16H5(model, partial); });
  CHECK(msg.find("features.0.bias") != std::string::npos);
}

// Flips `n` bytes in the middle of a file, as a bad disk or a bad copy would.
void FlipMiddle(const std::string& path, size_t n = 256) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<std::streamoff>(fs::file_size(path));
  std::string bytes(n, '\0');
  f.seekg(size / 2);
  f.read(&bytes[0], static_cast<std::streamsize>(n));
  for (char& c : bytes) c = static_cast<char>(~c);
  f.seekp(size / 2);
  f.write(bytes.data(), static_cast<std::streamsize>(n));
}

TEST_CASE("a .pt with flipped bytes in the middle is refused naming the file; intact ones pass the check") {
  TempDir tmp;
  CSRNet a;
  test::HeInit(a, 3);
  const std::string path = (tmp / "model_best.pt").string();
  SaveModelPt(a, path, {});
  CHECK_NOTHROW(VerifyZipFile(path));  // torch's own output passes
  FlipMiddle(path);
  std::string msg = ErrorOf([&] { LoadModel(path); });
  CHECK(msg.find(path + ": checksum mismatch in ") != std::string::npos);
  CHECK(msg.find("(corrupt file)") != std::string::npos);
  msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, path);
  });
  CHECK(msg.find("checksum mismatch") != std::string::npos);
  CHECK(ErrorOf([&] { ReadWeightsBackend(path); }).find("checksum mismatch") != std::string::npos);
}

TEST_CASE("weights of another back end are refused, LoadModel follows the file") {
  TempDir tmp;
  CSRNet a(Backend::kA);
  test::HeInit(a, 4);
  const std::string pt = (tmp / "a.pt").string(), h5 = (tmp / "a.h5").string(), plain = (tmp / "plain.h5").string();
  SaveModelPt(a, pt, {Backend::kA, 1, 2.0});
  SaveWeightsH5(a, h5);
  WriteH5(a, plain);  // the original layout records no variant
  for (const std::string& path : {pt, h5}) {
    const std::string msg = ErrorOf([&] {
      CSRNet b(Backend::kB);
      LoadWeights(b, path);
    });
    INFO(msg);
    CHECK(msg.find(path + ": holds back end A weights, not B") != std::string::npos);
    CHECK(RecordedBackend(path) == Backend::kA);
    CSRNet c = LoadModel(path);
    CHECK(c->backend_variant() == Backend::kA);
    CHECK(SameWeights(a, c));
  }
  CHECK_FALSE(RecordedBackend(plain).has_value());
  CSRNet d(Backend::kD);
  CHECK_NOTHROW(LoadWeights(d, plain));
}

TEST_CASE("NaN or infinite weights are refused naming the file and the parameter") {
  TempDir tmp;
  CSRNet a;
  test::HeInit(a, 6);
  {
    torch::NoGradGuard no_grad;
    a->backend[4]->as<torch::nn::Conv2d>()->weight[0][1][2][0] = std::numeric_limits<float>::quiet_NaN();
    a->output_layer->bias.fill_(std::numeric_limits<float>::infinity());
  }
  const std::string pt = (tmp / "nan.pt").string(), h5 = (tmp / "nan.h5").string();
  SaveModelPt(a, pt, {});
  SaveWeightsH5(a, h5);
  for (const std::string& path : {pt, h5}) {
    const std::string msg = ErrorOf([&] { LoadModel(path); });
    INFO(msg);
    CHECK(msg.find(path + ": tensor 'backend.4.weight' holds NaN or infinite values") != std::string::npos);
  }
}

TEST_CASE("an .h5 dataset of the wrong rank is refused before its data is read") {
  TempDir tmp;
  CSRNet a;
  const std::string path = (tmp / "rank.h5").string();
  {
    h5::Lock h5_lock;
    const h5::Hid f_file = h5::Create(path);
    const hid_t f = f_file.get();
    for (const auto& item : a->named_parameters()) {
      const torch::Tensor t = item.value().detach().contiguous();
      std::vector<hsize_t> shape(t.sizes().begin(), t.sizes().end());
      if (item.key() == "frontend.2.weight") shape = {static_cast<hsize_t>(t.numel())};  // flattened
      if (item.key() == "frontend.2.bias") continue;
      h5::WriteFloats(f, item.key(), t.data_ptr<float>(), shape);
    }
    const float x = 1.0f;
    h5::WriteFloats(f, "frontend.2.bias", &x, {});  // a scalar
  }
  const std::string msg = ErrorOf([&] {
    CSRNet m;
    LoadWeights(m, path);
  });
  INFO(msg);
  CHECK(msg.find("rank.h5: tensor 'frontend.2.weight' has shape [36864], expected [64,64,3,3]") != std::string::npos);
}

}  // namespace
}  // namespace csr
