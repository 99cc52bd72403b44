#include "train/precision_probe.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <torch/utils.h>
#ifdef CSR_TORCH_CUDA
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/DeviceGuard.h>
#endif

#include "common/base/error.h"
#include "common/base/log.h"
#include "train/inference.h"
#include "train/packed_forward.h"

namespace csr {
namespace {

constexpr const char* kFakeVariable = "CSR_PRECISION_PROBE_FAKE";

std::string Fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

double SecondsSince(ProbeClock::time_point since) {
  return std::chrono::duration<double>(ProbeClock::now() - since).count();
}

// Saves torch's default CPU generator state, puts it back on scope exit.
class CpuRngGuard {
 public:
  CpuRngGuard() : gen_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    state_ = gen_.get_state();
  }
  ~CpuRngGuard() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(state_);
  }
  CpuRngGuard(const CpuRngGuard&) = delete;
  CpuRngGuard& operator=(const CpuRngGuard&) = delete;

 private:
  at::Generator gen_;
  at::Tensor state_;
};

// Takes the parameters' gradients aside while alive (the probe's backward
// passes make their own, dropped after each step) and puts them back, the
// same tensors, on scope exit; batch normalisation's running statistics
// (which the probe's training-mode forwards update) are restored too.
class GradientStash {
 public:
  explicit GradientStash(CSRNet& model) : params_(model->parameters()), buffers_(model->buffers()) {
    for (at::Tensor& p : params_) saved_.push_back(p.grad());
    for (const at::Tensor& b : buffers_) saved_buffers_.push_back(b.clone());
    Drop();
  }
  ~GradientStash() {
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = saved_[i];
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].copy_(saved_buffers_[i]);
  }
  GradientStash(const GradientStash&) = delete;
  GradientStash& operator=(const GradientStash&) = delete;
  void Drop() {
    for (at::Tensor& p : params_) p.mutable_grad() = at::Tensor();
  }

 private:
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> saved_;
  std::vector<at::Tensor> buffers_;
  std::vector<at::Tensor> saved_buffers_;
};

// A fixed input pattern in [-1, 1] (no random draws).
at::Tensor ProbeInput(const ProbeSettings& s) {
  const int64_t n = 3 * static_cast<int64_t>(s.height) * s.width;
  return at::arange(n, at::kFloat).mul_(0.618).sin_().reshape({1, 3, s.height, s.width});
}

// CSRNetImpl::forward's layers one by one (the same ops), stopping after the
// first layer that ends past `deadline`: nullopt then.
std::optional<at::Tensor> ForwardUntil(CSRNet& model, at::Tensor x, ProbeClock::time_point deadline) {
  for (torch::nn::Sequential* seq : {&model->frontend, &model->backend}) {
    for (torch::nn::AnyModule& layer : **seq) {
      x = layer.forward(x);
      if (ProbeClock::now() > deadline) return std::nullopt;
    }
  }
  return model->output_layer->forward(x);
}

// The trainer's step without the optimizer: forward (autocast in
// `precision`), the summed squared error against a zero map in fp32, backward;
// the gradients are dropped.
ProbeStep TrainingStep(CSRNet& model, const at::Tensor& input, Precision precision, GradientStash& grads) {
  return [&model, input, precision, &grads](ProbeClock::time_point deadline) {
    std::optional<at::Tensor> out;
    {
      AutocastGuard autocast(precision, c10::Device(c10::kCPU));
      out = ForwardUntil(model, input, deadline);
    }
    if (!out) return false;
    out->to(at::kFloat).square().sum().backward();
    grads.Drop();
    return true;
  };
}

// A bf16 copy of `model` as the LibTorch engine makes one (channels-last,
// weights cast once). Constructing it draws from torch's RNG: callers guard it.
CSRNet Bf16Copy(CSRNet& model) {
  CSRNet copy(model->backend_variant());
  torch::NoGradGuard no_grad;
  auto source = model->named_parameters();
  for (auto& item : copy->named_parameters()) item.value().copy_(source[item.key()]);
  PrepareModel(copy, c10::Device(c10::kCPU), Precision::kBf16);
  copy->to(at::kBFloat16);
  return copy;
}

ProbeTimes ProbeInference(CSRNet& model, const at::Tensor& input, const ProbeSettings& s) {
  ProbeStep fp32;
  if (at::hasMKLDNN()) {  // the engine's fp32 path
    auto packed = std::make_shared<PackedForward>(model);
    fp32 = [packed, input](ProbeClock::time_point) {
      packed->Run(input);
      return true;
    };
  } else {
    fp32 = [&model, input](ProbeClock::time_point) {
      torch::NoGradGuard no_grad;
      model->forward(input.contiguous(ModelMemoryFormat(model)));
      return true;
    };
  }
  CSRNet copy = Bf16Copy(model);
  const at::Tensor input_cl = input.contiguous(at::MemoryFormat::ChannelsLast);
  const ProbeStep bf16 = [&copy, input_cl](ProbeClock::time_point deadline) {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(Precision::kBf16, c10::Device(c10::kCPU));
    return ForwardUntil(copy, input_cl, deadline).has_value();
  };
  return TimeProbeSteps(fp32, bf16, s);
}

// auto on CUDA: bf16 where cuDNN convolves in it (compute capability 8.0+).
Precision CudaAutoPrecision(c10::Device device, std::string* why) {
#ifdef CSR_TORCH_CUDA
  c10::DeviceGuard guard(device);
  if (at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8()) {
    *why = StrCat(device.str(), " has bf16 convolutions (compute capability 8.0 or later)");
    return Precision::kBf16;
  }
  *why = StrCat(device.str(), " has no fast bf16 (compute capability below 8.0); fp16 only when asked");
#else
  *why = StrCat(device.str(), ": no CUDA in this LibTorch");
#endif
  return Precision::kFp32;
}

}  // namespace

Precision FasterPrecision(const ProbeTimes& t) {
  return t.bf16_error.empty() && !t.bf16_cut && t.bf16 < t.fp32 ? Precision::kBf16 : Precision::kFp32;
}

bool Bf16Slower(const ProbeTimes& t) { return !t.bf16_error.empty() || t.bf16_cut || t.bf16 > t.fp32; }

std::string DescribeProbe(const ProbeTimes& t, ProbeMode mode) {
  const std::string step = mode == ProbeMode::kTraining ? "training probe step" : "inference probe step";
  std::string text;
  if (!t.bf16_error.empty()) {
    text = StrCat("bf16 failed: ", t.bf16_error, "; fp32 ", Fixed(t.fp32, 3), " s per ", step);
  } else if (t.bf16_cut) {
    text = StrCat("bf16 stopped after ", Fixed(t.bf16, 3), " s, over ", Fixed(t.cut, 0), "x fp32's ", Fixed(t.fp32, 3),
                  " s per ", step);
  } else {
    text = StrCat("bf16 ", Fixed(t.bf16, 3), " s vs fp32 ", Fixed(t.fp32, 3), " s per ", step, ", ",
                  Fixed(t.bf16 > 0 ? t.fp32 / t.bf16 : 0.0, 2), "x");
  }
  return text + (t.fake ? StrCat("; faked by ", kFakeVariable) : StrCat("; probe ", Fixed(t.seconds, 1), " s"));
}

std::optional<ProbeTimes> FakeProbeTimes() {
  const char* env = std::getenv(kFakeVariable);
  if (env == nullptr || *env == '\0') return std::nullopt;
  const std::string text = env;
  ProbeTimes t;
  t.fake = true;
  bool have32 = false, have16 = false;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    char* end = nullptr;
    const double v = eq == std::string::npos ? NAN : std::strtod(item.c_str() + eq + 1, &end);
    const bool ok = std::isfinite(v) && v > 0 && end != nullptr && *end == '\0';
    if (ok && key == "fp32") {
      t.fp32 = v;
      have32 = true;
    } else if (ok && key == "bf16") {
      t.bf16 = v;
      have16 = true;
    } else {
      have32 = have16 = false;
      break;
    }
  }
  if (!have32 || !have16) {
    throw UsageError(kFakeVariable, StrCat("expected fp32=SECONDS,bf16=SECONDS (a test's stand-in for the precision "
                                           "probe), got '",
                                           text, "'"));
  }
  return t;
}

ProbeTimes TimeProbeSteps(const ProbeStep& fp32, const ProbeStep& bf16, const ProbeSettings& s) {
  CSR_ASSERT(s.repetitions >= 1 && s.cut > 1 && s.decisive > 1, "TimeProbeSteps: repetitions ", s.repetitions, ", cut ",
             s.cut, ", decisive ", s.decisive);
  const ProbeClock::time_point start = ProbeClock::now();
  // One step; `limit` seconds from its start is its deadline (0: none).
  auto run = [](const ProbeStep& step, double limit, double* seconds) {
    const ProbeClock::time_point t0 = ProbeClock::now();
    const ProbeClock::time_point deadline =
        limit > 0 ? t0 + std::chrono::duration_cast<ProbeClock::duration>(std::chrono::duration<double>(limit))
                  : ProbeClock::time_point::max();
    const bool done = step(deadline);
    *seconds = SecondsSince(t0);
    return done;
  };
  ProbeTimes t;
  t.cut = s.cut;
  // A bf16 step that throws (no bf16 kernel here) counts as a failed one.
  auto run_bf16 = [&](double limit, double* seconds) {
    try {
      return run(bf16, limit, seconds);
    } catch (const std::exception& e) {
      t.bf16_error = FirstLine(e.what());
      *seconds = 0;
      return false;
    }
  };
  double warm32 = 0, seconds = 0;
  run(fp32, 0, &warm32);
  t.fp32 = warm32;
  if (!run_bf16(s.cut * warm32, &seconds)) {
    t.bf16 = seconds;
    t.bf16_cut = t.bf16_error.empty();
  } else {
    t.fp32 = t.bf16 = std::numeric_limits<double>::infinity();
    for (int i = 0; i < s.repetitions && !t.bf16_cut && t.bf16_error.empty(); ++i) {
      if (i > 0 && SecondsSince(start) > s.budget) break;
      run(fp32, 0, &seconds);
      t.fp32 = std::min(t.fp32, seconds);
      const bool done = run_bf16(s.cut * t.fp32, &seconds);
      t.bf16_cut = !done && t.bf16_error.empty();
      t.bf16 = done ? std::min(t.bf16, seconds) : seconds;
      if (t.bf16 * s.decisive < t.fp32 || t.fp32 * s.decisive < t.bf16) break;  // clear already
    }
  }
  t.seconds = SecondsSince(start);
  return t;
}

ProbeSettings ProbeSettings::For(ProbeMode mode) {
  ProbeSettings s;
  // A training step (forward and backward) costs about three forward passes.
  s.height = s.width = mode == ProbeMode::kTraining ? 128 : 192;
  return s;
}

ProbeTimes ProbeModel(CSRNet& model, ProbeMode mode, const ProbeSettings& s) {
  CSR_ASSERT(s.height >= 8 && s.width >= 8, "ProbeModel: input ", s.height, " x ", s.width);
  const c10::Device cpu(c10::kCPU);
  CpuRngGuard rng;
  const at::Tensor input = ProbeInput(s);
  if (mode == ProbeMode::kInference) return ProbeInference(model, input, s);
  PrepareModelForTraining(model, cpu, Precision::kFp32);  // the CPU's training layout, every precision
  const at::Tensor x = input.contiguous(ModelMemoryFormat(model));
  GradientStash grads(model);
  return TimeProbeSteps(TrainingStep(model, x, Precision::kFp32, grads),
                        TrainingStep(model, x, Precision::kBf16, grads), s);
}

PrecisionChoice ResolvePrecision(Precision asked, CSRNet& model, c10::Device device, ProbeMode mode) {
  PrecisionChoice c;
  c.precision = asked;
  if (asked == Precision::kFp32 || asked == Precision::kFp16) return c;
  if (!device.is_cpu()) {
    if (asked != Precision::kAuto) return c;
    std::string why;
    c.precision = device.is_cuda() ? CudaAutoPrecision(device, &why) : Precision::kFp32;
    c.by_auto = true;
    log::Info("precision auto: ", PrecisionName(c.precision), " (", why.empty() ? device.str() : why, ")");
    return c;
  }
  c.times = FakeProbeTimes();
  if (!c.times) c.times = ProbeModel(model, mode, ProbeSettings::For(mode));
  const std::string figures = DescribeProbe(*c.times, mode);
  if (asked == Precision::kAuto) {
    c.precision = FasterPrecision(*c.times);
    c.by_auto = true;
    log::Info("precision auto: ", PrecisionName(c.precision), " (", figures, ")");
  } else if (Bf16Slower(*c.times)) {
    const bool failed = !c.times->bf16_error.empty();
    log::Warn("--precision bf16 ", failed ? "does not run" : "measures slower than fp32", " on this CPU (", figures,
              "): running bf16 as asked; fp32 or --precision auto would ", failed ? "run" : "be faster");
  } else {
    log::Info("precision bf16 (", figures, ")");
  }
  return c;
}

}  // namespace csr
