#include "train/trainer.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/progress.h"

namespace csr {

void RegisterTrainOptions(ArgParser& p, TrainOptions* o) {
  p.Add("shards", &o->shards, "Shard set folder written by crop_shards (or give it as the argument)");
  p.Add("config", &o->config, "JSON file of option values (keys as the long options); the command line wins");
  p.Add("out", &o->out, "Run folder; empty = runs/<date-time> (with --resume: the checkpoint's folder)");
  p.Add("resume", &o->resume, "Continue exactly from this checkpoint (RUN/checkpoint.pt)");
  p.AddAlias("pre", "resume");
  p.Add("vgg16", &o->vgg16, "ImageNet VGG-16 front end: HDF5 with torchvision names (tools/export_vgg16.py)");
  p.Add("weights", &o->weights, "Start from these CSRNet weights (.h5 original layout or .pt) instead of the init");
  p.AddChoice("backend", &o->backend, {"A", "B", "C", "D"},
              "Back-end variant of the paper (dilation 1/2/2,2,2,4,4,4/4)");
  p.Add("epochs", &o->epochs, "Epochs in total (a resumed run continues up to this)");
  p.Add("lr", &o->lr, "SGD learning rate");
  p.Add("lr-steps", &o->lr_steps, "Comma-separated epochs (1-based) from which the rate is multiplied by --lr-gamma");
  p.Add("lr-gamma", &o->lr_gamma, "Factor applied to the rate at each of --lr-steps");
  p.Add("momentum", &o->momentum, "SGD momentum");
  p.Add("weight-decay", &o->weight_decay, "L2 weight decay");
  p.Add("batch-size", &o->batch_size, "Patches per step; a batch only groups records of equal size");
  p.Add("max-steps", &o->max_steps, "Stop after this many steps in total, checkpointed (0 = no limit)");
  p.Add("checkpoint-every", &o->checkpoint_every,
        "Also write the checkpoint every N steps within an epoch (0 = only by --checkpoint-minutes)");
  p.Add("checkpoint-minutes", &o->checkpoint_minutes,
        "Also write the checkpoint mid-epoch when this many minutes have passed since the last (0 = never)");
  p.Add("seed", &o->seed, "Seeds the initialisation and every epoch's data order");
  p.Add("workers", &o->workers, "Background threads that decode batches ahead of the step (0 = in the step)");
  p.Add("prefetch", &o->prefetch, "Batches prepared ahead");
  p.Add("threads", &o->threads, "LibTorch compute threads; 0 = every core");
  p.AddChoice("precision", &o->precision, {"fp32", "bf16"}, "fp32, or bf16 autocast with channels-last tensors");
  p.Add("device", &o->device, "auto, cpu, cuda or cuda:N (auto = CUDA when available)");
  p.Add("eval-tile", &o->eval_tile, "Validation images larger than this many pixels a side run in tiles (0 = never)");
  p.Add("eval-every", &o->eval_every, "Validate every N epochs and after the last (0 = never)");
}

// ---- Signals ------------------------------------------------------------------
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "signal flag must be lock-free");

extern "C" void OnStopSignal(int sig) { g_signal.store(sig); }

bool StopRequested() { return g_signal.load() != 0; }

// Installs SIGINT/SIGTERM handlers that only raise a flag; the training loop
// finishes its step and checkpoints. SA_RESETHAND: a second signal kills at
// once (the checkpoint on disk is always a complete one).
class SignalScope {
 public:
  SignalScope() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

std::string SignalName(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  std::ostringstream os;
  if (s >= 3600) {
    os << s / 3600 << "h" << (s % 3600) / 60 / 10 << (s % 3600) / 60 % 10 << "m";
  } else if (s >= 60) {
    os << s / 60 << "m" << (s % 60) / 10 << s % 10 << "s";
  } else {
    os << s << "s";
  }
  return os.str();
}

// ---- Checkpoint fields --------------------------------------------------------
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
  return archive;
}

c10::Device ModelDevice(CSRNet& model) { return model->parameters().front().device(); }

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string ShapeText(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// A corrupt or hand-made checkpoint can carry momentum buffers that are NaN,
// infinite or of the wrong shape; any of them poisons every later step (the
// update would go on silently with a momentum off by orders of magnitude).
void CheckMomentum(CSRNet& model, torch::optim::Optimizer& optimizer, const std::string& path) {
  const auto named = model->named_parameters();
  size_t i = 0;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const std::string name = i < named.size() ? named[i].key() : StrCat("#", i);
      ++i;
      const auto it = optimizer.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == optimizer.state().end()) continue;
      const torch::Tensor& buf = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
      if (!buf.defined()) continue;
      if (buf.sizes() != p.sizes()) {
        throw Error(path, StrCat("momentum buffer of '", name, "' has shape ", ShapeText(buf.sizes()), ", expected ",
                                 ShapeText(p.sizes()), " (corrupt checkpoint)"));
      }
      if (!torch::isfinite(buf).all().item<bool>()) {
        throw Error(path, StrCat("momentum buffer of '", name, "' holds NaN or infinite values (corrupt checkpoint)"));
      }
    }
  }
}

// Counters that index the epoch's plan must be sane before they are used.
void CheckState(const TrainState& s, const std::string& path) {
  const std::pair<const char*, int64_t> counts[] = {{"state_epoch", s.epoch},
                                                    {"state_batch", s.batch},
                                                    {"state_step", s.step},
                                                    {"patches", s.patches},
                                                    {"best_epoch", s.best_epoch}};
  for (const auto& [key, v] : counts) {
    if (v < 0) throw Error(path, StrCat("checkpoint field '", key, "' is negative (corrupt checkpoint)"));
  }
  for (double v : {s.best_mae, s.loss_sum, s.seconds, s.wait_seconds}) {
    if (!std::isfinite(v)) throw Error(path, "checkpoint holds a non-finite statistic (corrupt checkpoint)");
  }
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
  archive.write("state_epoch", c10::IValue(state.epoch));
  archive.write("state_batch", c10::IValue(state.batch));
  archive.write("state_step", c10::IValue(state.step));
  archive.write("best_mae", c10::IValue(state.best_mae));
  archive.write("best_epoch", c10::IValue(state.best_epoch));
  archive.write("loss_sum", c10::IValue(state.loss_sum));
  archive.write("patches", c10::IValue(state.patches));
  archive.write("seconds", c10::IValue(state.seconds));
  archive.write("wait_seconds", c10::IValue(state.wait_seconds));
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cpu", gen.get_state());
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
  torch::serialize::InputArchive opt;
  if (!archive.try_read("optimizer", opt)) throw Error(path, "checkpoint has no optimizer state");
  try {
    optimizer.load(opt);
  } catch (const c10::Error& e) {
    throw Error(path, StrCat("optimizer state does not fit the model: ", FirstLine(e.what_without_backtrace())));
  }
  CheckMomentum(model, optimizer, path);
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

namespace {

// One parameter's share of a fused SGD step.
struct SgdSlice {
  float* w;
  const float* g;
  float* v;  // momentum buffer, or null without momentum
  int64_t n;
  bool first;  // the buffer is new: it starts as the step itself (torch's rule)
  float lr, wd, momentum;
};

void UpdateSlice(const SgdSlice& s, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float d = s.g[i] + s.wd * s.w[i];
    float step = d;
    if (s.v) {
      step = s.first ? d : s.momentum * s.v[i] + d;
      s.v[i] = step;
    }
    s.w[i] -= s.lr * step;
  }
}

// torch::optim::SGD's arithmetic op by op, for tensors the fused loop cannot take.
void UpdateOpByOp(torch::Tensor& p, const torch::Tensor& grad, torch::Tensor& buf, bool first, float lr, float wd,
                  float momentum) {
  torch::Tensor d = wd != 0 ? grad.add(p, wd) : grad;
  if (buf.defined()) {
    if (first) {
      buf.copy_(d);
    } else {
      buf.mul_(momentum).add_(d);
    }
    d = buf;
  }
  p.add_(d, -lr);
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    if (o.dampening() != 0 || o.nesterov()) return SGD::step(std::move(closure));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable(true);
    loss = closure();
  }
  std::vector<SgdSlice> slices;
  std::vector<int64_t> ends;  // running element count at the end of each slice
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    const float lr = static_cast<float>(o.lr()), wd = static_cast<float>(o.weight_decay());
    const float momentum = static_cast<float>(o.momentum());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      torch::Tensor buf;
      bool first = false;
      if (momentum != 0) {
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        auto it = state_.find(key);
        if (it == state_.end()) {
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(torch::empty_like(p));
          it = state_.emplace(key, std::move(state)).first;
          first = true;
        }
        buf = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
      }
      const bool fusable = p.scalar_type() == torch::kFloat32 && grad.scalar_type() == torch::kFloat32 &&
                           p.device().is_cpu() && p.is_non_overlapping_and_dense() && grad.strides() == p.strides() &&
                           (!buf.defined() || buf.strides() == p.strides());
      if (!fusable) {
        UpdateOpByOp(p, grad, buf, first, lr, wd, momentum);
        continue;
      }
      slices.push_back({p.data_ptr<float>(), grad.data_ptr<float>(), buf.defined() ? buf.data_ptr<float>() : nullptr,
                        p.numel(), first, lr, wd, momentum});
      ends.push_back((ends.empty() ? 0 : ends.back()) + p.numel());
    }
  }
  if (slices.empty()) return loss;
  // One parallel region over every parameter's elements: a single fork/join
  // per step rather than one per tensor (each costs a barrier, and barriers
  // are slow when the machine is shared).
  at::parallel_for(0, ends.back(), 1 << 15, [&](int64_t begin, int64_t end) {
    size_t k = static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), begin) - ends.begin());
    for (; k < slices.size() && begin < end; ++k) {
      const int64_t start = ends[k] - slices[k].n;
      const int64_t stop = std::min(end, ends[k]);
      UpdateSlice(slices[k], begin - start, stop - start);
      begin = stop;
    }
  });
  return loss;
}

void ClearGradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
  }
}

FusedSGD MakeOptimizer(CSRNet& model, const TrainOptions& opts) {
  return FusedSGD(model->parameters(),
                  torch::optim::SGDOptions(opts.lr).momentum(opts.momentum).weight_decay(opts.weight_decay));
}

double LearningRate(const TrainOptions& opts, int64_t epoch) {
  double lr = opts.lr;
  for (double step : opts.lr_steps) {
    if (static_cast<double>(epoch + 1) >= step) lr *= opts.lr_gamma;
  }
  return lr;
}

namespace {
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}
}  // namespace

double TrainStep(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                 Precision precision, c10::Device device) {
  const torch::Tensor input = batch.data.to(device).contiguous(ModelMemoryFormat(model));
  const torch::Tensor target = batch.target.to(device);
  torch::Tensor output;
  {
    AutocastGuard autocast(precision, device);
    output = model->forward(input);
  }
  // The loss in fp32 whatever the precision: sums over large maps lose too
  // much in bf16.
  torch::Tensor loss = torch::nn::functional::mse_loss(output.to(torch::kFloat32), target,
                                                       torch::nn::functional::MSELossFuncOptions(torch::kSum));
  const double value = loss.item<double>();
  if (!std::isfinite(value)) return value;
  ClearGradients(optimizer);
  loss.backward();
  optimizer.step();
  return value;
}

ValidationResult Validate(CSRNet& model, const ShardDataset& test, const InferenceOptions& opts, int workers,
                          const std::function<bool()>& stop) {
  ValidationResult r;
  const size_t n = test.size().value();
  std::vector<std::vector<size_t>> plan(n);
  for (size_t i = 0; i < n; ++i) plan[i] = {i};
  BatchLoader loader(test, std::move(plan), 0, workers, 2);
  double abs_sum = 0, sq_sum = 0, abs_d = 0, sq_d = 0, loss = 0;
  torch::data::Example<> batch;
  for (size_t i = 0; i < n; ++i) {
    if (stop && stop()) {
      r.complete = false;
      break;
    }
    if (!loader.Next(&batch)) break;
    const torch::Tensor density = PredictDensity(model, batch.data, opts);
    const double predicted = density.sum().item<double>();
    const RecordInfo info = test.info(i);
    const double err = predicted - static_cast<double>(info.count), err_d = predicted - info.density_sum;
    abs_sum += std::abs(err);
    sq_sum += err * err;
    abs_d += std::abs(err_d);
    sq_d += err_d * err_d;
    loss += (density - batch.target[0][0]).pow(2).sum().item<double>();
    ++r.images;
  }
  if (r.images > 0) {
    const double k = static_cast<double>(r.images);
    r.mae = abs_sum / k;
    r.rmse = std::sqrt(sq_sum / k);
    r.mae_density = abs_d / k;
    r.rmse_density = std::sqrt(sq_d / k);
    r.loss = loss / k;
  }
  return r;
}

// ---- The tool -----------------------------------------------------------------
namespace {

constexpr const char* kCheckpoint = "checkpoint.pt";
constexpr const char* kLog = "train_log.jsonl";

std::string DefaultRunFolder() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return std::string("runs/") + buf;
}

// Comparisons are written so that NaN fails them: every bound also refuses NaN.
// The upper bounds stop values that would only exhaust memory or threads.
void CheckOptions(const TrainOptions& o) {
  if (o.shards.empty()) throw UsageError("SHARDS", "no shard set given (trainer SHARDS [options], see --help)");
  if (o.epochs < 1) throw UsageError("--epochs", "must be >= 1");
  if (!(o.lr > 0 && std::isfinite(o.lr))) throw UsageError("--lr", "must be a finite number > 0");
  if (!(o.momentum >= 0 && o.momentum < 1)) throw UsageError("--momentum", "must be in [0, 1)");
  if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay)))
    throw UsageError("--weight-decay", "must be a finite number >= 0");
  if (!(o.lr_gamma > 0 && std::isfinite(o.lr_gamma))) throw UsageError("--lr-gamma", "must be a finite number > 0");
  for (double e : o.lr_steps) {
    if (!(e >= 1 && e < 1e9)) throw UsageError("--lr-steps", "epochs must be numbers >= 1");
  }
  if (o.batch_size < 1 || o.batch_size > 4096) throw UsageError("--batch-size", "must be between 1 and 4096");
  if (o.max_steps < 0) throw UsageError("--max-steps", "must be >= 0");
  if (o.checkpoint_every < 0) throw UsageError("--checkpoint-every", "must be >= 0 (0 = only by time)");
  if (!(o.checkpoint_minutes >= 0 && std::isfinite(o.checkpoint_minutes))) {
    throw UsageError("--checkpoint-minutes", "must be a finite number >= 0 (0 = never by time)");
  }
  if (o.workers < 0 || o.workers > 256) throw UsageError("--workers", "must be between 0 and 256");
  if (o.prefetch < 1 || o.prefetch > 1024) throw UsageError("--prefetch", "must be between 1 and 1024");
  if (o.threads < 0 || o.threads > 1024) throw UsageError("--threads", "must be between 0 (every core) and 1024");
  if (o.eval_tile != 0 && (o.eval_tile < 64 || o.eval_tile > 1 << 20)) {
    throw UsageError("--eval-tile", "must be 0 (never tile) or between 64 and 1048576 pixels");
  }
  if (o.eval_every < 0) throw UsageError("--eval-every", "must be >= 0");
  ParseBackend(o.backend);  // throws UsageError for a name that is not A-D
}

// Command line > --config file > the resumed checkpoint's configuration > defaults.
void ResolveOptions(ArgParser& parser, TrainOptions& opts, const std::vector<std::string>& positional) {
  if (positional.size() > 1) throw UsageError(positional[1], "only one shard set folder can be given");
  if (!positional.empty()) {
    if (parser.IsSet("shards")) throw UsageError(positional[0], "shard set given twice (argument and --shards)");
    const char* args[] = {"trainer", "--shards", positional[0].c_str()};
    parser.Parse(3, args);
  }
  if (!opts.config.empty()) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(ReadTextFile(opts.config));
    } catch (const nlohmann::json::exception& e) {
      throw Error(opts.config, StrCat("not valid JSON: ", e.what()));
    }
    parser.ApplyJson(cfg, opts.config);
  }
  if (!opts.resume.empty()) {
    nlohmann::json cfg = ReadCheckpointConfig(opts.resume);
    for (const char* key : {"resume", "config", "out"}) cfg.erase(key);
    parser.ApplyJson(cfg, opts.resume);
    if (!parser.IsSet("out")) opts.out = fs::path(opts.resume).parent_path().string();
    if (opts.out.empty()) opts.out = ".";
  }
  if (opts.out.empty()) opts.out = DefaultRunFolder();
}

class Trainer {
 public:
  Trainer(TrainOptions opts, nlohmann::json config, bool backend_given)
      : opts_(std::move(opts)), config_(std::move(config)), backend_given_(backend_given) {}
  int Run();

 private:
  enum class Stop { kNone, kSignal, kMaxSteps };
  void Setup();
  void FollowWeightsBackend();
  bool CheckpointDue() const;
  void Checkpoint(const TrainState& state);
  void PrepareRunFolder();
  Stop TrainEpoch();
  void FinishEpoch(const ValidationResult* eval, bool complete, double eval_seconds);
  int Interrupted();
  std::string Path(const char* name) const { return (fs::path(opts_.out) / name).string(); }

  TrainOptions opts_;
  nlohmann::json config_;
  bool backend_given_ = false;  // --backend on the command line or in --config
  std::chrono::steady_clock::time_point last_checkpoint_ = std::chrono::steady_clock::now();
  c10::Device device_ = c10::Device(c10::kCPU);
  Precision precision_ = Precision::kFp32;
  std::shared_ptr<const ShardSet> shards_;
  std::unique_ptr<ShardDataset> train_, test_;
  std::vector<std::pair<int, int>> sizes_;
  CSRNet model_{nullptr};
  std::unique_ptr<FusedSGD> optimizer_;
  TrainState state_;
  int64_t epoch_batches_ = 0;
  std::vector<nlohmann::json> log_;
  double run_seconds_ = 0;
  int64_t run_epochs_ = 0;
};

void Trainer::Setup() {
  device_ = ResolveDevice(opts_.device);
  precision_ = ParsePrecision(opts_.precision);
  const int threads = SetThreads(opts_.threads);
  KeepFreedMemory();
  shards_ = std::make_shared<const ShardSet>(opts_.shards);
  train_ = std::make_unique<ShardDataset>(shards_, "train", /*mirror=*/true);
  test_ = std::make_unique<ShardDataset>(shards_, "test", /*mirror=*/false);
  if (train_->records() == 0) throw Error(opts_.shards, "the shard set has no training records");
  if (test_->records() == 0) log::Warn(opts_.shards, ": no test split: no validation, no model_best files");
  sizes_ = ExampleSizes(*train_);

  if (opts_.resume.empty() && !opts_.weights.empty()) FollowWeightsBackend();
  torch::manual_seed(static_cast<uint64_t>(opts_.seed));
  model_ = CSRNet(ParseBackend(opts_.backend));
  InitWeights(model_);
  if (opts_.resume.empty()) {
    if (!opts_.vgg16.empty()) {
      LoadVgg16H5(model_, opts_.vgg16);
    } else if (opts_.weights.empty()) {
      log::Warn(
          "no --vgg16: training the front end from scratch will not reach the paper's numbers "
          "(tools/export_vgg16.py writes the ImageNet weights)");
    }
    if (!opts_.weights.empty()) LoadWeights(model_, opts_.weights);
  }
  PrepareModelForTraining(model_, device_, precision_);
  optimizer_ = std::make_unique<FusedSGD>(MakeOptimizer(model_, opts_));
  if (!opts_.resume.empty()) {
    state_ = LoadCheckpoint(opts_.resume, model_, *optimizer_);
    log::Info("resuming ", opts_.resume, " at epoch ", state_.epoch + 1, ", batch ", state_.batch, " (step ",
              state_.step, ")");
  }
  log::Info("CSRNet back end ", opts_.backend, ", ", ParameterCount(*model_), " parameters; ", train_->size().value(),
            " training patches (", train_->records(), " crops, mirrored), ", test_->records(), " test images; ",
            device_.str(), ", ", threads, " threads, ", opts_.precision, "; run folder ", opts_.out);
}

// A --weights file names its variant (ModelFileInfo, or the .h5's attribute);
// back ends A..D have the same shapes, so without this a back end A file
// would load into a B network without any error.
void Trainer::FollowWeightsBackend() {
  const std::optional<Backend> recorded = RecordedBackend(opts_.weights);
  if (!recorded || BackendName(*recorded) == opts_.backend) return;
  if (backend_given_) {
    throw Error(opts_.weights, StrCat("holds back end ", BackendName(*recorded), " weights, but --backend ",
                                      opts_.backend, " was asked for (omit --backend to follow the file)"));
  }
  opts_.backend = BackendName(*recorded);
  config_["backend"] = opts_.backend;
  log::Info(opts_.weights, ": back end ", opts_.backend, " (recorded in the file)");
}

bool Trainer::CheckpointDue() const {
  if (opts_.max_steps > 0 && state_.step >= opts_.max_steps) return false;  // the stop writes one anyway
  if (state_.batch >= epoch_batches_) return false;                         // so does the epoch's end
  return (opts_.checkpoint_every > 0 && state_.step % opts_.checkpoint_every == 0) ||
         (opts_.checkpoint_minutes > 0 && Seconds(last_checkpoint_) >= 60.0 * opts_.checkpoint_minutes);
}

void Trainer::Checkpoint(const TrainState& state) {
  SaveCheckpoint(Path(kCheckpoint), model_, *optimizer_, state, config_);
  last_checkpoint_ = std::chrono::steady_clock::now();
}

void Trainer::PrepareRunFolder() {
  MakeDirs(opts_.out);
  if (opts_.resume.empty() && fs::exists(Path(kCheckpoint))) {
    throw Error(opts_.out, StrCat("already holds a training run: continue it with --resume ", Path(kCheckpoint),
                                  ", or choose another --out"));
  }
  for (const auto& entry : fs::directory_iterator(opts_.out)) {
    if (IsAtomicTemp(entry.path())) fs::remove(entry.path());  // left by a killed run
  }
  WriteTextFileAtomic(Path("config.json"), config_.dump(2) + "\n");
  // Keep only the epochs the checkpoint has completed: lines written after
  // it (a crash between log and checkpoint, a partial epoch) are redone.
  if (!opts_.resume.empty() && fs::exists(Path(kLog))) {
    std::istringstream lines(ReadTextFile(Path(kLog)));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (entry.is_object() && entry.value("epoch", int64_t{0}) <= state_.epoch && !entry.contains("partial")) {
        log_.push_back(std::move(entry));
      }
    }
  }
}

Trainer::Stop Trainer::TrainEpoch() {
  std::vector<std::vector<size_t>> plan =
      PlanEpoch(sizes_, opts_.batch_size, static_cast<uint64_t>(opts_.seed), state_.epoch);
  epoch_batches_ = static_cast<int64_t>(plan.size());
  if (state_.batch > epoch_batches_) {
    throw Error(opts_.resume, StrCat("checkpoint position (batch ", state_.batch, ") lies beyond the epoch's ",
                                     epoch_batches_, " batches (was --batch-size changed?)"));
  }
  BatchLoader loader(*train_, std::move(plan), static_cast<size_t>(state_.batch), opts_.workers, opts_.prefetch);
  std::unique_ptr<Progress> progress;
  if (::isatty(STDERR_FILENO)) {
    progress = std::make_unique<Progress>(StrCat("epoch ", state_.epoch + 1, "/", opts_.epochs),
                                          epoch_batches_ - state_.batch);
  }
  const auto start = std::chrono::steady_clock::now();
  Stop stop = Stop::kNone;
  torch::data::Example<> batch;
  while (true) {
    if (opts_.max_steps > 0 && state_.step >= opts_.max_steps) {
      stop = Stop::kMaxSteps;
      break;
    }
    if (StopRequested()) {
      stop = Stop::kSignal;
      break;
    }
    if (!loader.Next(&batch)) break;
    const double loss = TrainStep(model_, *optimizer_, batch, precision_, device_);
    if (!std::isfinite(loss)) {
      throw Error("training", StrCat("the loss became ", loss, " at epoch ", state_.epoch + 1, ", step ",
                                     state_.step + 1, ": stopped; the last good checkpoint ",
                                     fs::exists(Path(kCheckpoint)) ? Path(kCheckpoint) : std::string("(none yet)"),
                                     " is kept (try a lower --lr)"));
    }
    state_.loss_sum += loss;
    state_.patches += batch.data.size(0);
    ++state_.batch;
    ++state_.step;
    if (progress) progress->Tick();
    if (CheckpointDue()) {
      // The state a SIGTERM would save here, with the epoch's time so far:
      // resuming from it is exact, and kill -9 loses at most one interval.
      TrainState now = state_;
      now.seconds += Seconds(start);
      now.wait_seconds += loader.wait_seconds();
      Checkpoint(now);
    }
  }
  if (progress) progress->Finish();
  state_.seconds += Seconds(start);
  state_.wait_seconds += loader.wait_seconds();
  return stop;
}

void Trainer::FinishEpoch(const ValidationResult* eval, bool complete, double eval_seconds) {
  const int64_t epoch = state_.epoch + 1;
  const double train_seconds = std::max(state_.seconds, 1e-9);
  nlohmann::json entry = {
      {"epoch", epoch},
      {"train_loss", state_.patches > 0 ? state_.loss_sum / static_cast<double>(state_.patches) : 0.0},
      {"mae", eval ? nlohmann::json(eval->mae) : nlohmann::json(nullptr)},
      {"rmse", eval ? nlohmann::json(eval->rmse) : nlohmann::json(nullptr)},
      {"mae_density", eval ? nlohmann::json(eval->mae_density) : nlohmann::json(nullptr)},
      {"rmse_density", eval ? nlohmann::json(eval->rmse_density) : nlohmann::json(nullptr)},
      {"lr", LearningRate(opts_, state_.epoch)},
      {"seconds", state_.seconds + eval_seconds},
      {"patches_per_s", static_cast<double>(state_.patches) / train_seconds},
      {"data_wait_fraction", state_.wait_seconds / train_seconds},
      {"steps", state_.step}};
  if (!complete) entry["partial"] = true;
  const bool improved = eval && eval->images > 0 && (state_.best_mae < 0 || eval->mae < state_.best_mae);
  if (improved) {
    state_.best_mae = eval->mae;
    state_.best_epoch = epoch;
    ModelFileInfo info{model_->backend_variant(), epoch, eval->mae};
    SaveModelPt(model_, Path("model_best.pt"), info);
    SaveWeightsH5(model_, Path("model_best.h5"));
  }
  entry["best_mae"] = state_.best_mae >= 0 ? nlohmann::json(state_.best_mae) : nlohmann::json(nullptr);
  log_.push_back(entry);
  std::string text;
  for (const auto& e : log_) text += e.dump() + "\n";
  WriteTextFileAtomic(Path(kLog), text);

  const double epoch_seconds = state_.seconds + eval_seconds;
  if (complete) {
    run_seconds_ += epoch_seconds;
    ++run_epochs_;
    state_ = TrainState{state_.epoch + 1, 0, state_.step, state_.best_mae, state_.best_epoch};
  }
  Checkpoint(state_);

  std::ostringstream line;
  line.setf(std::ios::fixed);
  line.precision(2);
  line << "epoch " << epoch << "/" << opts_.epochs << (complete ? "" : " (partial)") << ": loss "
       << entry["train_loss"].get<double>();
  if (eval) line << ", MAE " << eval->mae << ", RMSE " << eval->rmse;
  if (state_.best_mae >= 0) line << " (best " << state_.best_mae << " at epoch " << state_.best_epoch << ")";
  line << ", " << entry["patches_per_s"].get<double>() << " patches/s, data wait "
       << 100.0 * entry["data_wait_fraction"].get<double>() << "%, " << FormatDuration(epoch_seconds);
  if (run_epochs_ > 0 && state_.epoch < opts_.epochs) {
    line << ", ~" << FormatDuration(run_seconds_ / run_epochs_ * static_cast<double>(opts_.epochs - state_.epoch))
         << " left";
  }
  log::Info(line.str());
}

int Trainer::Interrupted() {
  const int sig = g_signal.load();
  Checkpoint(state_);
  log::Info("stopped by ", SignalName(sig), " at epoch ", state_.epoch + 1, ", batch ", state_.batch, "/",
            epoch_batches_, "; checkpoint written to ", Path(kCheckpoint), ". Resume with: ", log::Program(),
            " --resume ", Path(kCheckpoint));
  return 128 + sig;
}

int Trainer::Run() {
  SignalScope signals;
  Setup();
  PrepareRunFolder();
  if (state_.epoch >= opts_.epochs || (opts_.max_steps > 0 && state_.step >= opts_.max_steps)) {
    log::Info("nothing to do: ", state_.epoch, " epochs and ", state_.step,
              " steps already done (raise --epochs or --max-steps to go on)");
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  InferenceOptions infer;
  infer.tile = opts_.eval_tile;
  infer.precision = precision_;
  infer.device = device_;
  while (state_.epoch < opts_.epochs) {
    SetLearningRate(*optimizer_, LearningRate(opts_, state_.epoch));
    const Stop stop = TrainEpoch();
    if (stop == Stop::kSignal) return Interrupted();
    const bool complete = state_.batch >= epoch_batches_;
    const int64_t epoch = state_.epoch + 1;
    const bool validate = test_->records() > 0 && opts_.eval_every > 0 &&
                          (epoch % opts_.eval_every == 0 || epoch == opts_.epochs || stop == Stop::kMaxSteps);
    ValidationResult eval;
    const auto eval_start = std::chrono::steady_clock::now();
    if (validate) {
      eval = Validate(model_, *test_, infer, opts_.workers, StopRequested);
      if (!eval.complete) return Interrupted();
    }
    FinishEpoch(validate ? &eval : nullptr, complete, validate ? Seconds(eval_start) : 0.0);
    if (StopRequested()) return Interrupted();
    if (stop == Stop::kMaxSteps) {
      log::Info("stopped after --max-steps ", opts_.max_steps, "; continue with --resume ", Path(kCheckpoint));
      break;
    }
  }
  std::ostringstream summary;
  summary << "finished: " << state_.epoch << " complete epochs, " << state_.step << " steps; this run took "
          << FormatDuration(Seconds(start));
  if (state_.best_mae >= 0) {
    summary << "; best MAE " << state_.best_mae << " at epoch " << state_.best_epoch << " -> " << Path("model_best.pt")
            << ", " << Path("model_best.h5");
  }
  log::Info(summary.str());
  return 0;
}

}  // namespace

int RunTrainer(int argc, const char* const* argv) {
  return RunTool("trainer", [&] {
    TrainOptions opts;
    std::vector<std::string> positional;
    ArgParser parser("trainer", "SHARDS [options]",
                     "Trains CSRNet on a shard set written by crop_shards, validating on its test split after "
                     "every epoch.\nWrites RUN/config.json, train_log.jsonl, checkpoint.pt (every epoch, atomically), "
                     "model_best.pt and model_best.h5.\nSIGINT/SIGTERM: finishes the step, checkpoints, and exits; "
                     "--resume RUN/checkpoint.pt continues exactly.");
    RegisterTrainOptions(parser, &opts);
    parser.AddPositional("SHARDS", &positional, "Shard set folder (the output of crop_shards)");
    if (!parser.Parse(argc, argv)) return 0;
    ResolveOptions(parser, opts, positional);
    CheckOptions(opts);
    Trainer trainer(opts, parser.ToJson(), parser.IsSet("backend"));
    return trainer.Run();
  });
}

}  // namespace csr
