#include "train/checkpoint.h"

#include <cmath>
#include <mutex>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "train/optimizer.h"
#include "train/torch_compat.h"

namespace csr {

namespace {

int64_t ReadInt(torch::serialize::InputArchive& a, const std::string& key, const std::string& file) {
  c10::IValue v;
  if (!a.try_read(key, v) || !v.isInt()) throw Error(file, StrCat("checkpoint field '", key, "' missing or corrupt"));
  return v.toInt();
}

double ReadDouble(torch::serialize::InputArchive& a, const std::string& key, const std::string& file) {
  c10::IValue v;
  if (!a.try_read(key, v) || !v.isDouble()) {
    throw Error(file, StrCat("checkpoint field '", key, "' missing or corrupt"));
  }
  return v.toDouble();
}

torch::serialize::InputArchive OpenCheckpoint(const std::string& path, c10::Device device) {
  torch::serialize::InputArchive archive = OpenArchive(path, device);
  c10::IValue kind;
  if (!archive.try_read("kind", kind) || !kind.isString() || kind.toStringRef() != "checkpoint") {
    throw Error(path, "not a trainer checkpoint (a model file? start from it with --weights)");
  }
  c10::IValue version;
  if (archive.try_read("format_version", version)) {
    if (!version.isInt() || version.toInt() < 1 || version.toInt() > kCheckpointFormatVersion) {
      throw Error(path, StrCat("checkpoint format version ", version.isInt() ? std::to_string(version.toInt()) : "?",
                               " (this build reads 1..", kCheckpointFormatVersion,
                               "): written by a newer csrnet-cpp, or corrupt"));
    }
  }
  return archive;
}

c10::Device ModelDevice(CSRNet& model) { return model->parameters().front().device(); }

// One optimizer buffer of parameter `name` must have the parameter's shape
// and finite values (Adam's second moment also must not be negative).
void CheckBuffer(const torch::Tensor& buf, const torch::Tensor& p, const char* what, const std::string& name,
                 const std::string& path) {
  if (!buf.defined()) return;
  if (buf.sizes() != p.sizes()) {
    throw Error(path, StrCat(what, " of '", name, "' has shape ", ShapeText(buf.sizes()), ", expected ",
                             ShapeText(p.sizes()), " (corrupt checkpoint)"));
  }
  if (!torch::isfinite(buf).all().item<bool>()) {
    throw Error(path, StrCat(what, " of '", name, "' holds NaN or infinite values (corrupt checkpoint)"));
  }
}

// A corrupt or hand-made checkpoint can carry optimizer buffers (SGD's
// momentum, Adam's moments) that are NaN, infinite or of the wrong shape; any
// of them poisons every later step (the update would go on silently with a
// momentum off by orders of magnitude).
void CheckOptimizerState(CSRNet& model, torch::optim::Optimizer& optimizer, const std::string& path) {
  const auto named = model->named_parameters();
  size_t i = 0;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const std::string name = i < named.size() ? named[i].key() : StrCat("#", i);
      ++i;
      const auto it = optimizer.state().find(compat::StateKey(p));
      if (it == optimizer.state().end()) continue;
      if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get())) {
        CheckBuffer(sgd->momentum_buffer(), p, "momentum buffer", name, path);
      } else if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(it->second.get())) {
        CheckBuffer(adam->exp_avg(), p, "Adam first moment", name, path);
        CheckBuffer(adam->exp_avg_sq(), p, "Adam second moment", name, path);
        if (adam->exp_avg_sq().defined() && (adam->exp_avg_sq() < 0).any().item<bool>()) {
          throw Error(path, StrCat("Adam second moment of '", name, "' is negative (corrupt checkpoint)"));
        }
        if (adam->step() < 0)
          throw Error(path, StrCat("Adam step count of '", name, "' is negative (corrupt checkpoint)"));
      }
    }
  }
}

// Counters that index the epoch's plan must be sane before they are used.
void CheckState(const TrainState& s, const std::string& path) {
  const std::pair<const char*, int64_t> counts[] = {
      {"state_epoch", s.epoch}, {"state_batch", s.batch},     {"state_step", s.step},
      {"patches", s.patches},   {"best_epoch", s.best_epoch}, {"loss_scale_growth", s.loss_scale_growth}};
  for (const auto& [key, v] : counts) {
    if (v < 0) throw Error(path, StrCat("checkpoint field '", key, "' is negative (corrupt checkpoint)"));
  }
  for (double v : {s.best_mae, s.loss_sum, s.seconds, s.wait_seconds, s.loss_scale}) {
    if (!std::isfinite(v)) throw Error(path, "checkpoint holds a non-finite statistic (corrupt checkpoint)");
  }
  if (s.loss_scale < 0) throw Error(path, "checkpoint field 'loss_scale' is negative (corrupt checkpoint)");
}

}  // namespace

void SaveCheckpoint(const std::string& path, CSRNet& model, torch::optim::Optimizer& optimizer, const TrainState& state,
                    const nlohmann::json& config) {
  torch::serialize::OutputArchive archive;
  ModelFileInfo info;
  info.backend = model->backend_variant();
  info.epoch = state.epoch;
  info.mae = state.best_mae;
  WriteModelArchive(model, info, archive);
  torch::serialize::OutputArchive opt(archive.compilation_unit());
  optimizer.save(opt);
  archive.write("optimizer", opt);
  archive.write("kind", c10::IValue(std::string("checkpoint")));
  archive.write("optimizer_kind", c10::IValue(std::string(OptimizerName(KindOf(optimizer)))));
  archive.write("format_version", c10::IValue(kCheckpointFormatVersion));
  archive.write("state_epoch", c10::IValue(state.epoch));
  archive.write("state_batch", c10::IValue(state.batch));
  archive.write("state_step", c10::IValue(state.step));
  archive.write("best_mae", c10::IValue(state.best_mae));
  archive.write("best_epoch", c10::IValue(state.best_epoch));
  archive.write("loss_sum", c10::IValue(state.loss_sum));
  archive.write("patches", c10::IValue(state.patches));
  archive.write("seconds", c10::IValue(state.seconds));
  archive.write("wait_seconds", c10::IValue(state.wait_seconds));
  if (state.loss_scale != 0) {  // fp16 runs (a bad value is written as it is, and refused on load)
    archive.write("loss_scale", c10::IValue(state.loss_scale));
    archive.write("loss_scale_growth", c10::IValue(state.loss_scale_growth));
  }
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cpu", gen.get_state());
  }
  // A CUDA run also draws from its GPU's generator (dropout-free CSRNet does
  // not, but torch ops may): keep it so a resumed run continues exactly.
  if (const c10::Device device = ModelDevice(model); device.is_cuda()) {
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cuda", gen.get_state());
  }
  archive.write("config", c10::IValue(config.dump()));
  AtomicFile out(path);
  try {
    archive.save_to(out.temp_path().string());
  } catch (const c10::Error& e) {
    throw Error(path, StrCat("cannot write the checkpoint: ", e.what_without_backtrace(), " (disk full?)"));
  }
  out.Commit();
}

namespace {
TrainState ReadCheckpoint(const std::string& path, CSRNet& model, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive = OpenCheckpoint(path, ModelDevice(model));
  const ModelFileInfo info = ReadModelInfo(archive, path);
  if (info.backend != model->backend_variant()) {
    throw Error(path, StrCat("holds a back end ", BackendName(info.backend), " model, not ",
                             BackendName(model->backend_variant())));
  }
  ReadModelArchive(model, archive, path);
  // Checkpoints from before --optimizer hold SGD state and no optimizer_kind.
  c10::IValue kind_value;
  const std::string kind = archive.try_read("optimizer_kind", kind_value)
                               ? (kind_value.isString() ? kind_value.toStringRef() : std::string("?"))
                               : std::string("sgd");
  const std::string expected = OptimizerName(KindOf(optimizer));
  if (kind != expected) {
    throw Error(path, StrCat("holds the state of optimizer '", kind, "', this run uses --optimizer ", expected,
                             " (resume with the checkpoint's own config, or start afresh)"));
  }
  torch::serialize::InputArchive opt;
  if (!archive.try_read("optimizer", opt)) throw Error(path, "checkpoint has no optimizer state");
  try {
    optimizer.load(opt);
  } catch (const c10::Error& e) {
    throw Error(path, StrCat("optimizer state does not fit the model: ", FirstLine(e.what_without_backtrace())));
  }
  CheckOptimizerState(model, optimizer, path);
  TrainState s;
  s.epoch = ReadInt(archive, "state_epoch", path);
  s.batch = ReadInt(archive, "state_batch", path);
  s.step = ReadInt(archive, "state_step", path);
  s.best_mae = ReadDouble(archive, "best_mae", path);
  s.best_epoch = ReadInt(archive, "best_epoch", path);
  s.loss_sum = ReadDouble(archive, "loss_sum", path);
  s.patches = ReadInt(archive, "patches", path);
  s.seconds = ReadDouble(archive, "seconds", path);
  s.wait_seconds = ReadDouble(archive, "wait_seconds", path);
  // Written by fp16 runs only (GradScaler::Restore checks the values).
  c10::IValue scale;
  if (archive.try_read("loss_scale", scale)) {
    s.loss_scale = ReadDouble(archive, "loss_scale", path);
    s.loss_scale_growth = ReadInt(archive, "loss_scale_growth", path);
  }
  CheckState(s, path);
  torch::Tensor rng;
  if (!archive.try_read("rng_cpu", rng)) throw Error(path, "checkpoint has no RNG state");
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(rng.to(torch::kCPU));
  } catch (const c10::Error&) {
    throw Error(path, "checkpoint RNG state is corrupt");
  }
  if (const c10::Device device = ModelDevice(model); device.is_cuda()) {
    torch::Tensor cuda_rng;
    if (archive.try_read("rng_cuda", cuda_rng)) {
      at::Generator cuda_gen = at::globalContext().defaultGenerator(device);
      std::lock_guard<std::mutex> cuda_lock(cuda_gen.mutex());
      try {
        cuda_gen.set_state(cuda_rng.to(torch::kCPU));
      } catch (const c10::Error&) {
        throw Error(path, "checkpoint CUDA RNG state is corrupt");
      }
    } else {
      log::Warn(path, ": written by a CPU run, resumed on ", device.str(), ": the GPU's random stream starts afresh");
    }
  }
  return s;
}
}  // namespace

TrainState LoadCheckpoint(const std::string& path, CSRNet& model, torch::optim::Optimizer& optimizer) {
  try {
    return ReadCheckpoint(path, model, optimizer);
  } catch (const c10::Error& e) {  // a well-formed archive holding ill-formed values
    throw Error(path, StrCat("corrupt checkpoint: ", FirstLine(e.what_without_backtrace())));
  }
}

nlohmann::json ReadCheckpointConfig(const std::string& path) {
  torch::serialize::InputArchive archive = OpenCheckpoint(path, c10::Device(c10::kCPU));
  c10::IValue v;
  try {
    if (!archive.try_read("config", v) || !v.isString()) throw Error(path, "checkpoint has no configuration");
  } catch (const c10::Error& e) {
    throw Error(path, StrCat("corrupt checkpoint: ", FirstLine(e.what_without_backtrace())));
  }
  try {
    return nlohmann::json::parse(v.toStringRef());
  } catch (const nlohmann::json::exception&) {
    throw Error(path, "checkpoint configuration is corrupt");
  }
}

}  // namespace csr
