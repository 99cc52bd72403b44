// --precision auto, and the check behind an explicit bf16 on the CPU.
//
// Whether bf16 beats fp32 on a CPU is not written in its flags. Measured with
// this trainer: a bf16 step runs at 2.1x fp32's speed on a Zen 4 EPYC (AVX-512
// BF16), at 0.7x on a Xeon with AVX-512 BF16 but no AMX, and 15x slower where
// oneDNN emulates bf16 (AVX2 only: 20.6 s against 1.39 s). So on the CPU the
// tools time the network they are about to run, in both precisions, for about
// a second, and keep the faster; on CUDA the GPU's bf16 support decides
// without measuring (docs/training.md, "Precision").
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <c10/core/Device.h>

#include "deploy/choices.h"
#include "train/model.h"

namespace csr {

// What the probe times: the trainer's step (forward and backward with
// autograd, channels-last, as TrainStep runs it), or evaluate's and predict's
// pass (forward without autograd, as the LibTorch engine runs it: fp32 with
// packed oneDNN weights, bf16 on a bf16 copy of the weights).
enum class ProbeMode { kTraining, kInference };

// Seconds per probe step in each precision: the fastest of the timed steps.
struct ProbeTimes {
  double fp32 = 0;
  double bf16 = 0;        // when bf16_cut: how long the bf16 step had run when it was stopped
  bool bf16_cut = false;  // a bf16 step ran past `cut` x fp32's time and was stopped: clearly slower
  double cut = 0;         // that factor
  double seconds = 0;     // the whole probe, warm-ups included
  bool fake = false;      // from CSR_PRECISION_PROBE_FAKE, not measured
  // Why bf16 could not run at all (LibTorch's first line, e.g. oneDNN without
  // a bf16 convolution for this CPU); empty when it ran.
  std::string bf16_error;
};

// The decision, a pure function of the figures: bf16 when it ran and measured
// faster than fp32, else fp32 (a tie keeps fp32, the original's numbers).
Precision FasterPrecision(const ProbeTimes& times);
// True when bf16 measured slower than fp32, was stopped for it, or failed.
bool Bf16Slower(const ProbeTimes& times);
// The figures in words, e.g. "bf16 0.052 s vs fp32 0.110 s per training probe
// step, 2.12x; probe 0.9 s" (the ratio is fp32's time over bf16's: above 1
// bf16 is faster), or "bf16 stopped after 0.35 s, over 3x fp32's 0.110 s ...".
std::string DescribeProbe(const ProbeTimes& times, ProbeMode mode);

// FOR TESTS ONLY: the environment variable CSR_PRECISION_PROBE_FAKE, e.g.
// "fp32=1.0,bf16=2.0" (seconds per step), stands in for the measurement, which
// then does not run, so a test decides what auto picks. nullopt when it is
// unset or empty; a malformed value throws csr::UsageError naming it.
std::optional<ProbeTimes> FakeProbeTimes();

using ProbeClock = std::chrono::steady_clock;
// One probe step. Returns false when it stopped early because `deadline`
// passed (a step may ignore the deadline and return true).
using ProbeStep = std::function<bool(ProbeClock::time_point deadline)>;

// The probe's input (1 x 3 x height x width, a fixed pattern, no random
// draws; ProbeModel) and its timing (TimeProbeSteps).
struct ProbeSettings {
  int height = 128, width = 128;
  int repetitions = 3;     // timed rounds at most, >= 1
  double cut = 3.0;        // a bf16 step stops past this many times fp32's time
  double decisive = 1.25;  // no more rounds once one precision is this many times faster
  double budget = 2.0;     // seconds: no new round once the probe has run this long
  // Each mode's defaults: training 128 x 128, inference 192 x 192.
  static ProbeSettings For(ProbeMode mode);
};

// The timing, for any two steps: one warm-up step of each (fp32 first), then
// up to `repetitions` rounds alternating fp32 and bf16; each precision's time
// is its fastest timed step. The rounds stop early once one precision is
// `decisive` times faster than the other (a clear case needs no more), and
// once the probe has run `budget` seconds (a busy or slow machine). Every
// bf16 step gets a deadline of `cut` times fp32's time (the warm-up: fp32's
// warm-up), and the first bf16 step that misses it ends the probe with
// bf16_cut: where bf16 is emulated in software (15-20x slower) bf16 costs
// about `cut` fp32 steps, not 20. A bf16 step that throws ends it with
// bf16_error (an fp32 step's exception propagates).
ProbeTimes TimeProbeSteps(const ProbeStep& fp32, const ProbeStep& bf16, const ProbeSettings& settings = {});

// Times `model`, on the CPU, in fp32 and in bf16 autocast as `mode` runs it
// (TimeProbeSteps; a bf16 step stops at its deadline between two layers).
// Leaves everything as it was: the weights bit for bit, their gradients
// (defined or not), torch's CPU random-number state (nothing is drawn from
// it, and it is saved and restored all the same) and autocast's settings.
// kTraining puts the model in its CPU training layout first
// (PrepareModelForTraining: channels-last in every precision), as the trainer
// does anyway; kInference leaves the model untouched (it times packed weights
// and a bf16 copy). The model must be on the CPU.
ProbeTimes ProbeModel(CSRNet& model, ProbeMode mode, const ProbeSettings& settings);

// What --precision resolved to.
struct PrecisionChoice {
  Precision precision = Precision::kFp32;  // fp32, bf16 or fp16; never kAuto
  bool by_auto = false;                    // chosen by --precision auto
  std::optional<ProbeTimes> times;         // when the probe ran (or was faked)
};

// Resolves `asked` (already passed by CheckPrecision) for `model` on `device`:
//  - fp32, fp16, and bf16 on CUDA: as asked; nothing is measured.
//  - auto on CUDA: bf16 when the GPU convolves in bf16 (cuDNN 8, compute
//    capability 8.0 or later), else fp32; fp16 only ever when asked (its
//    range needs the loss scaler and can still overflow). Not measured.
//  - auto on the CPU: ProbeModel (or CSR_PRECISION_PROBE_FAKE), the faster of
//    fp32 and bf16; one info line, e.g. "precision auto: bf16 (bf16 0.052 s vs
//    fp32 0.110 s per training probe step, 2.12x; probe 0.9 s)".
//  - bf16 on the CPU: bf16 as asked, but probed all the same: one warning
//    line with the figures when bf16 measured slower than fp32.
PrecisionChoice ResolvePrecision(Precision asked, CSRNet& model, c10::Device device, ProbeMode mode);

}  // namespace csr
