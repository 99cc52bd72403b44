#include "train/model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <utility>

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/io/h5.h"
#include "common/io/zip_check.h"
#include "deploy/tiling.h"

namespace csr {
namespace {

namespace nn = torch::nn;

// VGG-16's first ten convolutions; 0 marks a 2x2 max-pool.
constexpr int kFrontend[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512};
constexpr int kBackend[] = {512, 512, 512, 256, 128, 64};

void CheckShape(c10::IntArrayRef shape, const torch::Tensor& param, const std::string& name, const std::string& file) {
  if (shape != param.sizes()) {
    throw Error(file, StrCat("tensor '", name, "' has shape ", ShapeText(shape), ", expected ",
                             ShapeText(param.sizes()), " (weights of another architecture?)"));
  }
}

// Checks `value` against the parameter it should fill, then copies it in.
// NaN or Inf weights (a diverged run, a corrupt file) are refused here:
// otherwise every count would silently come out NaN.
void Assign(torch::Tensor& param, const torch::Tensor& value, const std::string& name, const std::string& file) {
  CheckShape(value.sizes(), param, name, file);
  torch::NoGradGuard no_grad;
  const torch::Tensor v = value.to(param.device(), param.dtype());
  if (!torch::isfinite(v).all().item<bool>()) {
    throw Error(file, StrCat("tensor '", name, "' holds NaN or infinite values (diverged or corrupt weights)"));
  }
  param.copy_(v);
}

// The shape of a dataset, read before its data: a hostile file may declare a
// dataset far larger than memory.
std::vector<int64_t> DatasetShape(hid_t file, const std::string& name, const std::string& path) {
  h5::Lock lock;
  std::vector<int64_t> shape;
  for (hsize_t d : h5::DatasetShape(file, name, path)) {
    shape.push_back(d > static_cast<hsize_t>(INT64_MAX) ? -1 : static_cast<int64_t>(d));
  }
  return shape;
}

// Fills parameters from root datasets of an HDF5 file. `targets` maps a
// dataset name to the parameter it fills.
void LoadH5Tensors(const std::string& path, std::vector<std::pair<std::string, torch::Tensor>> targets,
                   bool warn_extras) {
  h5::Lock lock;
  const h5::Hid handle = h5::OpenRead(path);
  const hid_t file = handle.get();
  for (auto& [name, param] : targets) {
    if (!h5::Exists(file, name)) {
      throw Error(path, StrCat("missing tensor '", name, "' (expected CSRNet weights in the original layout)"));
    }
    CheckShape(DatasetShape(file, name, path), param, name, path);
    std::vector<hsize_t> shape;
    std::vector<float> data = h5::ReadFloats(file, name, path, &shape);
    std::vector<int64_t> sizes(shape.begin(), shape.end());
    Assign(param, torch::from_blob(data.data(), sizes, torch::kFloat32), name, path);
  }
  if (!warn_extras) return;
  std::map<std::string, bool> known;
  for (const auto& t : targets) known[t.first] = true;
  for (const std::string& name : h5::ListNames(file, path)) {
    if (!known.count(name)) log::Warn(path, ": ignoring unexpected dataset '", name, "'");
  }
}

// A back end named inside a file: a bad name is the file's fault, not a usage error.
Backend FileBackend(const std::string& text, const std::string& file) {
  try {
    return ParseBackend(text, file);
  } catch (const UsageError&) {
    throw Error(file, StrCat("records an unknown CSRNet back end '", text, "' (corrupt file?)"));
  }
}

// The variant recorded in an HDF5 weights file (none in the original layout).
std::optional<Backend> RecordedBackendH5(const std::string& path) {
  h5::Lock lock;
  const h5::Hid file = h5::OpenRead(path);
  if (!h5::HasAttr(file.get(), "backend")) return std::nullopt;
  return FileBackend(h5::GetAttrString(file.get(), "backend", path), path);
}

void CheckVariant(Backend recorded, CSRNet& model, const std::string& file) {
  if (recorded != model->backend_variant()) {
    throw Error(
        file, StrCat("holds back end ", BackendName(recorded), " weights, not ", BackendName(model->backend_variant()),
                     " (same shapes, different network: build the model the file names)"));
  }
}

}  // namespace

std::string ShapeText(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::vector<int> BackendDilations(Backend backend) {
  switch (backend) {
    case Backend::kA:
      return {1, 1, 1, 1, 1, 1};
    case Backend::kB:
      return {2, 2, 2, 2, 2, 2};
    case Backend::kC:
      return {2, 2, 2, 4, 4, 4};
    case Backend::kD:
      return {4, 4, 4, 4, 4, 4};
  }
  return {2, 2, 2, 2, 2, 2};
}

CSRNetImpl::CSRNetImpl(Backend backend, bool batch_norm) : variant_(backend), batch_norm_(batch_norm) {
  nn::Sequential front;
  int channels = 3;
  for (int width : kFrontend) {
    if (width == 0) {
      front->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      continue;
    }
    front->push_back(nn::Conv2d(nn::Conv2dOptions(channels, width, 3).padding(1)));
    if (batch_norm) front->push_back(nn::BatchNorm2d(width));
    front->push_back(nn::ReLU(nn::ReLUOptions(true)));
    channels = width;
  }
  nn::Sequential back;
  const std::vector<int> dilations = BackendDilations(backend);
  for (size_t i = 0; i < dilations.size(); ++i) {
    const int d = dilations[i];
    back->push_back(nn::Conv2d(nn::Conv2dOptions(channels, kBackend[i], 3).padding(d).dilation(d)));
    if (batch_norm) back->push_back(nn::BatchNorm2d(kBackend[i]));
    back->push_back(nn::ReLU(nn::ReLUOptions(true)));
    channels = kBackend[i];
  }
  frontend = register_module("frontend", front);
  this->backend = register_module("backend", back);
  output_layer = register_module("output_layer", nn::Conv2d(nn::Conv2dOptions(channels, 1, 1)));
}

torch::Tensor CSRNetImpl::forward(torch::Tensor x) {
  x = frontend->forward(x);
  x = backend->forward(x);
  return output_layer->forward(x);
}

int64_t ParameterCount(const torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

int ReceptiveFieldMargin(Backend backend) {
  // The chain of layers an output cell sees (ReLUs do not widen it): ten 3 x 3
  // convs with three 2 x 2 max-pools in the front end, the six dilated back-end
  // convs, the 1 x 1 output conv. The ONNX engine reads the same chain off an
  // exported graph (deploy/onnx_engine.cpp).
  std::vector<LayerGeometry> chain;
  for (int convs : {2, 2, 3}) {
    for (int i = 0; i < convs; ++i) chain.push_back({3, 1, 1});
    chain.push_back({2, 2, 1});
  }
  for (int i = 0; i < 3; ++i) chain.push_back({3, 1, 1});
  for (int d : BackendDilations(backend)) chain.push_back({3, 1, d});
  chain.push_back({1, 1, 1});
  return ChainMargin(chain);
}

void InitWeights(CSRNet& model, Init init) {
  torch::NoGradGuard no_grad;
  for (auto& module : model->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      const bool output = conv == model->output_layer.get();
      const double fan_in = static_cast<double>(conv->weight[0].numel());
      const double std = init == Init::kHe && !output ? std::sqrt(2.0 / fan_in) : 0.01;
      nn::init::normal_(conv->weight, 0.0, std);
      nn::init::zeros_(conv->bias);
    }
  }
}

namespace {

// The convolutions of `seq` in order, each with the batch normalisation that
// follows it (nullptr when none).
std::vector<std::pair<nn::Conv2dImpl*, nn::BatchNorm2dImpl*>> ConvLayers(nn::Sequential& seq) {
  std::vector<std::pair<nn::Conv2dImpl*, nn::BatchNorm2dImpl*>> out;
  for (const auto& child : seq->children()) {
    if (auto* conv = child->as<nn::Conv2d>()) {
      out.emplace_back(conv, nullptr);
    } else if (auto* bn = child->as<nn::BatchNorm2d>()) {
      CSR_CHECK(!out.empty() && out.back().second == nullptr, "model", "batch normalisation without a convolution");
      out.back().second = bn;
    }
  }
  return out;
}

}  // namespace

CSRNet FoldBatchNorm(CSRNet& model) {
  torch::NoGradGuard no_grad;
  CSRNet plain(model->backend_variant());
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(torch::kCPU);
  for (auto [from, to] : {std::pair{&model->frontend, &plain->frontend}, {&model->backend, &plain->backend}}) {
    const auto source = ConvLayers(*from);
    const auto target = ConvLayers(*to);
    CSR_CHECK(source.size() == target.size(), "model", "FoldBatchNorm: ", source.size(), " vs ", target.size(),
              " convolutions");
    for (size_t i = 0; i < source.size(); ++i) {
      const auto [conv, bn] = source[i];
      torch::Tensor w = conv->weight.detach().to(f64).contiguous();
      torch::Tensor b = conv->bias.detach().to(f64);
      if (bn != nullptr) {
        const torch::Tensor scale =
            bn->weight.detach().to(f64) / torch::sqrt(bn->running_var.detach().to(f64) + bn->options.eps());
        w = w * scale.view({-1, 1, 1, 1});
        b = (b - bn->running_mean.detach().to(f64)) * scale + bn->bias.detach().to(f64);
      }
      target[i].first->weight.copy_(w.to(torch::kFloat32));
      target[i].first->bias.copy_(b.to(torch::kFloat32));
    }
  }
  plain->output_layer->weight.copy_(model->output_layer->weight.detach().to(torch::kCPU, torch::kFloat32));
  plain->output_layer->bias.copy_(model->output_layer->bias.detach().to(torch::kCPU, torch::kFloat32));
  return plain;
}

void SetChannelsLast(CSRNet& model, bool channels_last) {
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  }
}

at::MemoryFormat ModelMemoryFormat(CSRNet& model) {
  const torch::Tensor& w = model->frontend[0]->as<nn::Conv2d>()->weight;
  return w.is_contiguous(at::MemoryFormat::ChannelsLast) && !w.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

void LoadWeightsH5(CSRNet& model, const std::string& path) {
  if (const auto recorded = RecordedBackendH5(path)) CheckVariant(*recorded, model, path);
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& item : model->named_parameters()) targets.emplace_back(item.key(), item.value());
  LoadH5Tensors(path, std::move(targets), /*warn_extras=*/true);
}

void SaveWeightsH5(CSRNet& model, const std::string& path) {
  CSR_CHECK(!model->batch_norm(), path, "SaveWeightsH5 takes a plain CSRNet (FoldBatchNorm first)");
  AtomicFile out(path);
  {
    h5::Lock lock;
    h5::Hid file = h5::Create(out.temp_path().string());
    for (const auto& item : model->named_parameters()) {
      const torch::Tensor t = item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
      std::vector<hsize_t> shape(t.sizes().begin(), t.sizes().end());
      h5::WriteFloats(file.get(), item.key(), t.data_ptr<float>(), shape);
    }
    h5::SetAttr(file.get(), "backend", BackendName(model->backend_variant()));
    if (!file.Close()) throw Error(out.final_path().string(), StrCat("cannot finish writing: ", h5::LastError()));
  }
  out.Commit();
}

void LoadVgg16H5(CSRNet& model, const std::string& path) {
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& item : model->frontend->named_parameters()) {
    targets.emplace_back("features." + item.key(), item.value());
  }
  LoadH5Tensors(path, std::move(targets), /*warn_extras=*/false);
}

void WriteModelArchive(CSRNet& model, const ModelFileInfo& info, torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive weights(archive.compilation_unit());
  model->save(weights);
  archive.write("model", weights);
  archive.write("format", c10::IValue(std::string("csrnet-cpp")));
  archive.write("backend", c10::IValue(BackendName(info.backend)));
  archive.write("epoch", c10::IValue(info.epoch));
  archive.write("mae", c10::IValue(info.mae));
  if (model->batch_norm()) archive.write("batch_norm", c10::IValue(true));
}

torch::serialize::InputArchive OpenArchive(const std::string& path, c10::Device device) {
  if (!fs::exists(path)) throw Error(path, "no such file");
  // LibTorch 1.13 never checks the records' CRC-32s: flipped bytes in a
  // tensor would load silently. Verify the whole archive first.
  VerifyZipFile(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device);
  } catch (const c10::Error&) {
    throw Error(path, "not a csrnet-cpp .pt file (corrupt or truncated?)");
  }
  return archive;
}

ModelFileInfo ReadModelInfo(torch::serialize::InputArchive& archive, const std::string& file) {
  try {
    c10::IValue format;
    if (!archive.try_read("format", format) || !format.isString() || format.toStringRef() != "csrnet-cpp") {
      throw Error(file, "not a csrnet-cpp model or checkpoint (no 'format' marker)");
    }
    ModelFileInfo info;
    c10::IValue v;
    if (archive.try_read("backend", v) && v.isString()) info.backend = FileBackend(v.toStringRef(), file);
    if (archive.try_read("epoch", v) && v.isInt()) info.epoch = v.toInt();
    if (archive.try_read("mae", v) && v.isDouble()) info.mae = v.toDouble();
    if (archive.try_read("batch_norm", v)) {
      if (!v.isBool()) throw Error(file, "corrupt .pt file: 'batch_norm' is not a boolean");
      info.batch_norm = v.toBool();
    }
    return info;
  } catch (const c10::Error& e) {
    throw Error(file, StrCat("corrupt .pt file: ", FirstLine(e.what_without_backtrace())));
  }
}

namespace {

// One parameter of a Module::save archive, which nests one archive per
// submodule: "frontend.0.weight" is frontend -> 0 -> weight.
torch::Tensor ReadNested(torch::serialize::InputArchive& weights, const std::string& name, const std::string& file) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::vector<torch::serialize::InputArchive> chain(parts.size());
  torch::serialize::InputArchive* level = &weights;
  bool found = true;
  for (size_t i = 0; i + 1 < parts.size() && found; ++i) {
    found = level->try_read(parts[i], chain[i]);
    level = &chain[i];
  }
  torch::Tensor value;
  if (!found || !level->try_read(parts.back(), value)) throw Error(file, StrCat("missing tensor '", name, "'"));
  return value;
}

}  // namespace

void ReadModelArchive(CSRNet& model, torch::serialize::InputArchive& archive, const std::string& file) {
  const ModelFileInfo info = ReadModelInfo(archive, file);
  CheckVariant(info.backend, model, file);
  if (info.batch_norm != model->batch_norm()) {
    throw Error(file, info.batch_norm ? "holds a batch-normalised model (trainer --batch-norm), this run has none"
                                      : "holds a model without batch normalisation, this run has --batch-norm");
  }
  try {
    torch::serialize::InputArchive weights;
    if (!archive.try_read("model", weights)) throw Error(file, "no model weights in this file");
    for (auto& item : model->named_parameters()) {
      Assign(item.value(), ReadNested(weights, item.key(), file), item.key(), file);
    }
    // Batch normalisation's running statistics (a plain CSRNet has none).
    for (auto& item : model->named_buffers()) {
      const torch::Tensor value = ReadNested(weights, item.key(), file);
      const std::string& key = item.key();
      const bool variance = key.size() >= 11 && key.compare(key.size() - 11, 11, "running_var") == 0;
      if (variance && (value < 0).any().item<bool>()) {
        throw Error(file, StrCat("tensor '", key, "' holds negative variances (corrupt checkpoint)"));
      }
      Assign(item.value(), value, key, file);
    }
  } catch (const c10::Error& e) {
    throw Error(file, StrCat("corrupt .pt file: ", FirstLine(e.what_without_backtrace())));
  }
}

void SaveModelPt(CSRNet& model, const std::string& path, const ModelFileInfo& info) {
  AtomicFile out(path);
  torch::serialize::OutputArchive archive;
  WriteModelArchive(model, info, archive);
  try {
    archive.save_to(out.temp_path().string());
  } catch (const c10::Error& e) {
    throw Error(path, StrCat("cannot write: ", e.what_without_backtrace(), " (disk full?)"));
  }
  out.Commit();
}

bool IsHdf5File(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  return f && std::string(magic, 8) == std::string("\x89HDF\r\n\x1a\n", 8);
}

std::optional<Backend> RecordedBackend(const std::string& path) {
  if (!fs::exists(path)) throw Error(path, "no such file");
  if (IsHdf5File(path)) return RecordedBackendH5(path);
  torch::serialize::InputArchive archive = OpenArchive(path);
  return ReadModelInfo(archive, path).backend;
}

Backend ReadWeightsBackend(const std::string& path) { return RecordedBackend(path).value_or(Backend::kB); }

void LoadWeights(CSRNet& model, const std::string& path) {
  if (!fs::exists(path)) throw Error(path, "no such file");
  if (IsHdf5File(path)) {
    LoadWeightsH5(model, path);
    return;
  }
  torch::serialize::InputArchive archive = OpenArchive(path);
  if (ReadModelInfo(archive, path).batch_norm && !model->batch_norm()) {
    CSRNet trained(model->backend_variant(), /*batch_norm=*/true);
    ReadModelArchive(trained, archive, path);
    CSRNet folded = FoldBatchNorm(trained);
    torch::NoGradGuard no_grad;
    auto source = folded->named_parameters();
    for (auto& item : model->named_parameters()) item.value().copy_(source[item.key()]);
    return;
  }
  ReadModelArchive(model, archive, path);
}

CSRNet LoadModel(const std::string& path) {
  if (!fs::exists(path)) throw Error(path, "no such file");
  if (IsHdf5File(path)) {
    CSRNet model(ReadWeightsBackend(path));
    LoadWeightsH5(model, path);
    return model;
  }
  // One verification and one archive load for both the variant and the weights.
  torch::serialize::InputArchive archive = OpenArchive(path);
  const ModelFileInfo info = ReadModelInfo(archive, path);
  CSRNet model(info.backend, info.batch_norm);
  ReadModelArchive(model, archive, path);
  return info.batch_norm ? FoldBatchNorm(model) : model;
}

}  // namespace csr
