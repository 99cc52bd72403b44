#include "train/trainer.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include <ATen/Context.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/base/random.h"
#include "common/eval/train_log.h"
#include "train/precision_probe.h"

namespace csr {

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

}  // namespace

StepOutcome TrainStepOn(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                        Precision precision, c10::Device device, Distributed* dist, bool stop, GradScaler* scaler) {
  // From the loader's pinned buffers (CUDA) the copies overlap the launches.
  const bool async = device.is_cuda();
  const torch::Tensor input = batch.data.to(device, async).contiguous(ModelMemoryFormat(model));
  const torch::Tensor target = batch.target.to(device, async);
  torch::Tensor output;
  {
    AutocastGuard autocast(precision, device);
    output = model->forward(input);
  }
  // The loss in fp32 whatever the precision: sums over large maps lose too
  // much in bf16.
  torch::Tensor loss = torch::nn::functional::mse_loss(output.to(torch::kFloat32), target,
                                                       torch::nn::functional::MSELossFuncOptions(torch::kSum));
  const int64_t patches = batch.data.size(0);
  if (patches > 1) loss = loss / static_cast<double>(patches);
  StepOutcome out;
  out.loss = loss.item<double>();
  out.finite = std::isfinite(out.loss);
  out.loss_sum = out.finite ? out.loss * static_cast<double>(patches) : 0.0;
  out.patches = patches;
  out.stop = stop;
  if (!dist && !out.finite) return out;
  ClearGradients(optimizer);
  if (out.finite) (scaler ? loss * scaler->scale() : loss).backward();
  if (dist) {
    // Every gradient in ~16 MB buckets, plus the step's agreements, summed
    // over the ranks.
    std::vector<torch::Tensor> params = model->parameters();
    std::vector<torch::Tensor> grads;
    for (torch::Tensor& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    std::vector<torch::Tensor> buckets;
    std::vector<std::pair<size_t, size_t>> ranges;  // grads [first, last) per bucket
    constexpr int64_t kBucketBytes = 16 << 20;
    for (size_t first = 0; first < grads.size();) {
      size_t last = first;
      int64_t bytes = 0;
      std::vector<torch::Tensor> flat;
      while (last < grads.size() && (last == first || bytes + grads[last].nbytes() <= kBucketBytes)) {
        bytes += static_cast<int64_t>(grads[last].nbytes());
        flat.push_back(grads[last].reshape({-1}));
        ++last;
      }
      buckets.push_back(torch::cat(flat));
      ranges.push_back({first, last});
      first = last;
    }
    const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(device);
    buckets.push_back(
        torch::tensor({out.loss_sum, static_cast<double>(patches), stop ? 1.0 : 0.0, out.finite ? 0.0 : 1.0}, f64));
    dist->AllReduceSum(buckets);
    const torch::Tensor agreed = buckets.back().cpu();
    out.loss_sum = agreed[0].item<double>();
    out.patches = static_cast<int64_t>(std::llround(agreed[1].item<double>()));
    out.stop = agreed[2].item<double>() > 0;
    out.finite = agreed[3].item<double>() == 0;
    out.loss = out.finite ? out.loss_sum / static_cast<double>(std::max<int64_t>(out.patches, 1))
                          : std::numeric_limits<double>::quiet_NaN();
    if (!out.finite) return out;
    torch::NoGradGuard no_grad;
    for (size_t b = 0; b + 1 < buckets.size(); ++b) {
      buckets[b].div_(static_cast<double>(dist->world()));
      int64_t at = 0;
      for (size_t k = ranges[b].first; k < ranges[b].second; ++k) {
        const int64_t n = grads[k].numel();
        grads[k].copy_(buckets[b].narrow(0, at, n).view_as(grads[k]));
        at += n;
      }
    }
  }
  if (scaler) {  // every rank holds the same averaged gradients: they agree on the skip
    const bool finite = scaler->Unscale(model->parameters());
    scaler->Update(finite);
    if (!finite) {
      out.skipped = true;
      return out;
    }
  }
  optimizer.step();
  return out;
}

double TrainStep(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                 Precision precision, c10::Device device) {
  return TrainStepOn(model, optimizer, batch, precision, device, nullptr, false).loss;
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

// --precision auto given again with --resume (the same command starts and
// restarts a run): the precision the run resolved when it started, which its
// checkpoint's configuration records. Never measured again, so the resumed
// run computes exactly as the straight one.
void KeepRecordedPrecision(TrainOptions& opts, const nlohmann::json& cfg) {
  if (opts.precision != Precision::kAuto || !cfg.contains("precision") || !cfg["precision"].is_string()) return;
  opts.precision = ParsePrecision(cfg["precision"].get<std::string>(), opts.resume);
  log::Info("precision ", PrecisionName(opts.precision), " (recorded in ", opts.resume,
            "; --precision auto does not measure again on --resume)");
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
  if (opts.resume == "auto") {
    // Idempotent: the same command starts the run and, after a failure (or
    // under torchrun --max_restarts), continues it.
    if (opts.out.empty())
      throw UsageError("--resume", "auto needs --out (the run folder whose checkpoint to continue)");
    const fs::path ckpt = fs::path(opts.out) / kCheckpoint;
    opts.resume = fs::exists(ckpt) ? ckpt.string() : std::string();
  }
  if (!opts.resume.empty()) {
    nlohmann::json cfg = ReadCheckpointConfig(opts.resume);
    for (const char* key : {"resume", "config", "out", "world_size"}) cfg.erase(key);
    parser.ApplyJson(cfg, opts.resume);
    KeepRecordedPrecision(opts, cfg);
    if (!parser.IsSet("out")) opts.out = fs::path(opts.resume).parent_path().string();
    if (opts.out.empty()) opts.out = std::string(1, '.');  // not = ".": GCC 12 -Wrestrict false positive at -O3
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
  void BuildModel();
  void ChoosePrecision();
  void JoinRanks();
  void AgreePrecision();
  bool Lead() const { return !dist_ || dist_->rank() == 0; }
  bool AgreedStop();
  std::vector<std::vector<size_t>> RankPlan(std::vector<std::vector<size_t>> plan) const;
  ValidationResult ValidateRanks(const InferenceOptions& infer);
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
  Precision precision_ = Precision::kFp32;  // resolved: never kAuto once Setup has run
  bool precision_by_auto_ = false;          // chosen by --precision auto (in this run, not a resumed one)
  std::shared_ptr<const ShardSet> shards_;
  std::unique_ptr<ShardDataset> train_, test_;
  std::vector<std::pair<int, int>> sizes_;
  CSRNet model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<GradScaler> scaler_;  // fp16 only
  int64_t skipped_steps_ = 0;           // fp16 steps skipped for overflow in this epoch
  TrainState state_;
  int64_t epoch_batches_ = 0;
  std::vector<EpochLog> log_;
  double run_seconds_ = 0;
  int64_t run_epochs_ = 0;
  DistEnv env_;
  std::unique_ptr<Distributed> dist_;  // several processes; nullptr: this one alone
  bool agreed_stop_ = false;           // the ranks agreed to stop after the last step
};

void Trainer::Setup() {
  env_ = ReadDistEnv();
  device_ = ResolveDevice(opts_.device);
  CheckPrecision(opts_.precision, device_);
  ResolveDistBackend(opts_.dist_backend, device_);  // refused before any data is read, ranks or not
  // Fixed crop sizes (Part B, most batches): let cuDNN time its algorithms once per shape.
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  if (env_.active() && device_.is_cuda()) {
    device_ = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env_.local_rank));
  }
  if (env_.active()) {  // every rank's first line says who it is
    log::Info("rank ", env_.rank, " of ", env_.world, " (local rank ", env_.local_rank, ", launched by ", env_.launcher,
              "), rendezvous ", env_.master_addr, ":", env_.master_port, ", ", device_.str());
  }
  if (env_.active() && opts_.batch_norm) {
    // Each rank would keep its own running statistics (and a resume would need them all).
    throw UsageError("--batch-norm", "runs in one process: not under torchrun or srun");
  }
  const int threads = SetThreads(opts_.threads);
  UseTrainingHeap();
  shards_ = std::make_shared<const ShardSet>(opts_.shards);
  train_ = std::make_unique<ShardDataset>(shards_, "train", /*mirror=*/true);
  train_->set_pin_memory(device_.is_cuda());  // the loader's workers fill page-locked batches
  test_ = std::make_unique<ShardDataset>(shards_, "test", /*mirror=*/false);
  if (train_->records() == 0) throw Error(opts_.shards, "the shard set has no training records");
  if (test_->records() == 0) log::Warn(opts_.shards, ": no test split: no validation, no model_best files");
  sizes_ = ExampleSizes(*train_);

  BuildModel();
  ChoosePrecision();
  PrepareModelForTraining(model_, device_, precision_);
  optimizer_ = MakeRunOptimizer(model_, opts_);
  if (!opts_.resume.empty()) {
    state_ = LoadCheckpoint(opts_.resume, model_, *optimizer_);
    log::Info("resuming ", opts_.resume, " at epoch ", state_.epoch + 1, ", batch ", state_.batch, " (step ",
              state_.step, ")");
    // A position inside an epoch counts steps of a given number of ranks.
    const int64_t written_by = ReadCheckpointConfig(opts_.resume).value("world_size", int64_t{1});
    if (state_.batch > 0 && written_by != env_.world) {
      throw Error(opts_.resume, StrCat("was written part-way through an epoch by ", written_by,
                                       " rank(s): resume it with as many (this run has ", env_.world,
                                       "), or from a checkpoint at an epoch's end"));
    }
  }
  if (precision_ == Precision::kFp16) {
    scaler_ = std::make_unique<GradScaler>();
    if (state_.loss_scale > 0) scaler_->Restore(state_.loss_scale, state_.loss_scale_growth, opts_.resume);
  }
  if (env_.active()) JoinRanks();
  config_["precision"] = PrecisionName(precision_);  // the resolved one: a --resume keeps it
  log::Info("CSRNet back end ", BackendName(opts_.backend),
            opts_.batch_norm ? " with batch normalisation (folded into the model_best files)" : "", ", ",
            ParameterCount(*model_), " parameters; ", train_->size().value(), " training patches (", train_->records(),
            " crops, mirrored), ", test_->records(), " test images; ", device_.str(), ", ", threads, " threads, ",
            PrecisionName(precision_), precision_by_auto_ ? " (chosen by --precision auto)" : "", "; run folder ",
            opts_.out);
}

// The network with its initial weights: the seeded init, then --vgg16 and
// --weights (a resumed run's weights come from its checkpoint later).
void Trainer::BuildModel() {
  if (opts_.resume.empty() && !opts_.weights.empty()) FollowWeightsBackend();
  torch::manual_seed(static_cast<uint64_t>(opts_.seed));
  model_ = CSRNet(opts_.backend, opts_.batch_norm);
  InitWeights(model_, opts_.init);
  if (!opts_.resume.empty()) return;
  if (!opts_.vgg16.empty()) {
    LoadVgg16H5(model_, opts_.vgg16);
  } else if (opts_.weights.empty()) {
    log::Warn(
        "no --vgg16: training the front end from scratch will not reach the paper's numbers "
        "(tools/export_vgg16.py writes the ImageNet weights)",
        opts_.init == Init::kNormal ? "; from scratch, --init he learns where the original's N(0, 0.01) "
                                      "passes no image signal through 17 layers"
                                    : "");
  }
  if (!opts_.weights.empty()) LoadWeights(model_, opts_.weights);
}

// --precision resolved (ResolvePrecision, train/precision_probe.h). A resumed
// run keeps its checkpoint's precision and measures nothing (see
// KeepRecordedPrecision). With several ranks on the CPU only rank 0 measures
// (the others would compete for its cores); the others hold fp32 until
// JoinRanks hands them rank 0's choice. The probe leaves the weights, their
// gradients and torch's RNG as they were, so a run with auto equals one given
// the resolved precision, bit for bit.
void Trainer::ChoosePrecision() {
  precision_ = opts_.precision;
  if (!opts_.resume.empty() && precision_ != Precision::kAuto) return;
  if (env_.active() && env_.rank != 0 && device_.is_cpu()) {
    if (precision_ == Precision::kAuto) precision_ = Precision::kFp32;  // provisional
    return;
  }
  const PrecisionChoice choice = ResolvePrecision(opts_.precision, model_, device_, ProbeMode::kTraining);
  precision_ = choice.precision;
  precision_by_auto_ = choice.by_auto;
}

// Joins the other ranks: one line says who this process is, the ranks
// check they were given the same shard set and options, and take rank 0's
// weights. Only rank 0 reports progress and writes files from here on.
void Trainer::JoinRanks() {
  config_["world_size"] = env_.world;
  log::Info("rank ", env_.rank, ": joining the others (--dist-timeout ", opts_.dist_timeout, " s)");
  dist_ = std::make_unique<Distributed>(env_, opts_.dist_backend, device_, std::chrono::seconds(opts_.dist_timeout));
  dist_->CheckSame("shard set", StrCat(Fnv1a(shards_->manifest().dump())));
  dist_->CheckSame("configuration", StrCat(Fnv1a(config_.dump())));  // as asked: auto is still "auto" here
  AgreePrecision();
  std::vector<torch::Tensor> weights;
  for (const torch::Tensor& p : model_->parameters()) weights.push_back(p.data());
  dist_->Broadcast(weights);
  log::Info("rank ", env_.rank, ": ", env_.world, " ranks joined over ", dist_->backend(), "; global batch ",
            env_.world * opts_.batch_size, " (", env_.world, " x --batch-size ", opts_.batch_size, ")");
  if (!Lead()) log::SetLevel(log::Level::kWarning);
}

// Every rank computes in rank 0's precision: with --precision auto rank 0
// measured it, and the others hold a provisional one (or, on CUDA, their own
// GPU's, which may differ). The configurations were checked equal, so an
// explicit precision is the same everywhere and only auto's outcome travels.
void Trainer::AgreePrecision() {
  const std::string name = dist_->ShareFromRank0("precision", PrecisionName(precision_));
  const Precision agreed = ParsePrecision(name, "rank 0's precision");
  CSR_ASSERT(agreed != Precision::kAuto && (agreed == Precision::kFp16) == (precision_ == Precision::kFp16),
             "rank 0 runs ", name, ", rank ", env_.rank, " ", PrecisionName(precision_));
  precision_by_auto_ = opts_.precision == Precision::kAuto;
  if (agreed == precision_) return;
  log::Info("rank ", env_.rank, ": precision ", name, " (rank 0's choice, --precision auto)");
  precision_ = agreed;
  PrepareModelForTraining(model_, device_, precision_);  // CUDA: bf16 runs channels-last
}

// The ranks agree on stopping: any rank's SIGINT/SIGTERM stops them all at
// the same point.
bool Trainer::AgreedStop() {
  if (!dist_) return StopRequested();
  std::vector<torch::Tensor> flag = {
      torch::tensor({StopRequested() ? 1.0 : 0.0}, torch::TensorOptions().dtype(torch::kFloat64).device(device_))};
  dist_->AllReduceSum(flag);
  return flag[0].item<double>() > 0;
}

// This rank's share of an epoch's batches: batch k goes to rank k mod W, and
// when the batches do not divide evenly the last step's missing ones are
// taken from the epoch's start, so every rank takes the same number of steps
// (torch's DistributedSampler pads the same way).
std::vector<std::vector<size_t>> Trainer::RankPlan(std::vector<std::vector<size_t>> plan) const {
  if (!dist_ || plan.empty()) return plan;
  const size_t w = static_cast<size_t>(dist_->world()), r = static_cast<size_t>(dist_->rank());
  const size_t steps = (plan.size() + w - 1) / w;
  std::vector<std::vector<size_t>> mine;
  for (size_t s = 0; s < steps; ++s) mine.push_back(plan[(s * w + r) % plan.size()]);
  return mine;
}

// Validation split over the ranks (image i on rank i mod W), the sums added
// up, so MAE and RMSE are the single-process figures.
ValidationResult Trainer::ValidateRanks(const InferenceOptions& infer) {
  if (!dist_) return Validate(model_, *test_, infer, opts_.workers, StopRequested);
  ValidationResult r = Validate(model_, *test_, infer, opts_.workers, {}, static_cast<size_t>(dist_->rank()),
                                static_cast<size_t>(dist_->world()));
  std::vector<double> v = {static_cast<double>(r.images)};
  v.insert(v.end(), r.sums.begin(), r.sums.end());
  std::vector<torch::Tensor> t = {torch::tensor(v, torch::TensorOptions().dtype(torch::kFloat64)).to(device_)};
  dist_->AllReduceSum(t);
  const torch::Tensor all = t[0].cpu();
  r.images = static_cast<int64_t>(std::llround(all[0].item<double>()));
  for (size_t k = 0; k < r.sums.size(); ++k) r.sums[k] = all[static_cast<int64_t>(k) + 1].item<double>();
  r.Finish();
  return r;
}

// A --weights file names its variant (ModelFileInfo, or the .h5's attribute);
// back ends A..D have the same shapes, so without this a back end A file
// would load into a B network without any error.
void Trainer::FollowWeightsBackend() {
  const std::optional<Backend> recorded = RecordedBackend(opts_.weights);
  if (!recorded || *recorded == opts_.backend) return;
  if (backend_given_) {
    throw Error(opts_.weights,
                StrCat("holds back end ", BackendName(*recorded), " weights, but --backend ",
                       BackendName(opts_.backend), " was asked for (omit --backend to follow the file)"));
  }
  opts_.backend = *recorded;
  config_["backend"] = BackendName(opts_.backend);
  log::Info(opts_.weights, ": back end ", BackendName(opts_.backend), " (recorded in the file)");
}

bool Trainer::CheckpointDue() const {
  if (opts_.max_steps > 0 && state_.step >= opts_.max_steps) return false;  // the stop writes one anyway
  if (state_.batch >= epoch_batches_) return false;                         // so does the epoch's end
  return (opts_.checkpoint_every > 0 && state_.step % opts_.checkpoint_every == 0) ||
         (opts_.checkpoint_minutes > 0 && Seconds(last_checkpoint_) >= 60.0 * opts_.checkpoint_minutes);
}

void Trainer::Checkpoint(const TrainState& state) {
  if (!Lead()) return;  // rank 0 writes every file
  TrainState saved = state;
  saved.loss_scale = scaler_ ? scaler_->scale() : 0.0;
  saved.loss_scale_growth = scaler_ ? scaler_->growth_tracker() : 0;
  SaveCheckpoint(Path(kCheckpoint), model_, *optimizer_, saved, config_);
  last_checkpoint_ = std::chrono::steady_clock::now();
}

void Trainer::PrepareRunFolder() {
  if (!Lead()) return;
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
    for (EpochLog& e : ReadTrainLog(Path(kLog))) {
      if (e.epoch <= state_.epoch && !e.partial) log_.push_back(std::move(e));
    }
  }
}

Trainer::Stop Trainer::TrainEpoch() {
  std::vector<std::vector<size_t>> plan =
      RankPlan(PlanEpoch(sizes_, opts_.batch_size, static_cast<uint64_t>(opts_.seed), state_.epoch));
  epoch_batches_ = static_cast<int64_t>(plan.size());  // steps: with several ranks, each rank's share
  if (state_.batch > epoch_batches_) {
    throw Error(opts_.resume, StrCat("checkpoint position (batch ", state_.batch, ") lies beyond the epoch's ",
                                     epoch_batches_, " batches (was --batch-size changed?)"));
  }
  BatchLoader loader(*train_, std::move(plan), static_cast<size_t>(state_.batch), opts_.workers, opts_.prefetch);
  std::unique_ptr<Progress> progress;
  if (Lead() && ::isatty(STDERR_FILENO)) {
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
    // Several ranks stop where they agreed to (the last step's all-reduce
    // carried every rank's request); one process as soon as it is asked.
    if (dist_ ? agreed_stop_ : StopRequested()) {
      stop = Stop::kSignal;
      break;
    }
    if (!loader.Next(&batch)) break;
    const StepOutcome step =
        TrainStepOn(model_, *optimizer_, batch, precision_, device_, dist_.get(), StopRequested(), scaler_.get());
    agreed_stop_ = step.stop;
    if (step.skipped) ++skipped_steps_;
    const double loss = step.loss;
    if (!step.finite) {
      throw Error("training", StrCat("the loss became ", loss, " at epoch ", state_.epoch + 1, ", step ",
                                     state_.step + 1, ": stopped; the last good checkpoint ",
                                     fs::exists(Path(kCheckpoint)) ? Path(kCheckpoint) : std::string("(none yet)"),
                                     " is kept (try a lower --lr",
                                     precision_ == Precision::kFp16 ? ", or bf16/fp32: fp16 ends at 65504" : "", ")"));
    }
    state_.loss_sum += step.loss_sum;
    state_.patches += step.patches;
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
  EpochLog entry;
  entry.epoch = epoch;
  entry.train_loss = state_.patches > 0 ? state_.loss_sum / static_cast<double>(state_.patches) : 0.0;
  if (eval) {
    entry.mae = eval->mae;
    entry.rmse = eval->rmse;
    entry.mae_density = eval->mae_density;
    entry.rmse_density = eval->rmse_density;
  }
  entry.lr = LearningRate(opts_, state_.epoch);
  entry.seconds = state_.seconds + eval_seconds;
  entry.patches_per_s = static_cast<double>(state_.patches) / train_seconds;
  entry.data_wait_fraction = state_.wait_seconds / train_seconds;
  entry.steps = state_.step;
  entry.partial = !complete;
  if (skipped_steps_ > 0 && Lead()) {
    log::Info("epoch ", epoch, ": ", skipped_steps_,
              " fp16 step(s) skipped (gradients overflowed at the loss "
              "scale); the scale is now ",
              scaler_->scale());
  }
  skipped_steps_ = 0;
  const bool improved = eval && eval->images > 0 && (state_.best_mae < 0 || eval->mae < state_.best_mae);
  if (improved) {
    state_.best_mae = eval->mae;
    state_.best_epoch = epoch;
    if (Lead()) {
      ModelFileInfo info{model_->backend_variant(), epoch, eval->mae};
      // A --batch-norm run's files hold the plain network it computes in eval mode.
      CSRNet best = opts_.batch_norm ? FoldBatchNorm(model_) : model_;
      SaveModelPt(best, Path("model_best.pt"), info);
      SaveWeightsH5(best, Path("model_best.h5"));
    }
  }
  if (state_.best_mae >= 0) entry.best_mae = state_.best_mae;
  log_.push_back(entry);
  if (Lead()) WriteTextFileAtomic(Path(kLog), FormatTrainLog(log_));

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
  line << "epoch " << epoch << "/" << opts_.epochs << (complete ? "" : " (partial)") << ": loss " << *entry.train_loss;
  if (eval) line << ", MAE " << eval->mae << ", RMSE " << eval->rmse;
  if (state_.best_mae >= 0) line << " (best " << state_.best_mae << " at epoch " << state_.best_epoch << ")";
  line << ", " << entry.patches_per_s << " patches/s, data wait " << 100.0 * entry.data_wait_fraction << "%, "
       << FormatDuration(epoch_seconds);
  if (run_epochs_ > 0 && state_.epoch < opts_.epochs) {
    line << ", ~" << FormatDuration(run_seconds_ / run_epochs_ * static_cast<double>(opts_.epochs - state_.epoch))
         << " left";
  }
  log::Info(line.str());
}

int Trainer::Interrupted() {
  const int sig = g_signal.load() != 0 ? g_signal.load() : SIGTERM;  // another rank's, when not this one's
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
      eval = ValidateRanks(infer);
      if (!eval.complete) return Interrupted();
    }
    FinishEpoch(validate ? &eval : nullptr, complete, validate ? Seconds(eval_start) : 0.0);
    if (AgreedStop()) return Interrupted();
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
    opts.Check();
    Trainer trainer(opts, parser.ToJson(), parser.IsSet("backend"));
    return trainer.Run();
  });
}

}  // namespace csr
