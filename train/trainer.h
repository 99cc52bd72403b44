// The CSRNet trainer: one training step and the `trainer` tool itself
// (RunTrainer). Its pieces live beside it: train_options.h (the options),
// checkpoint.h, optimizer.h (SGD and the rate schedule), validation.h, and
// common/eval/train_log.h (the per-epoch log).
#pragma once

#include <torch/data/example.h>
#include <torch/optim/optimizer.h>

#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/grad_scaler.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/train_options.h"
#include "train/validation.h"

namespace csr {

// One SGD step on a batch. The loss is the mean over the batch's patches of
// each patch's sum of squared errors over the 1/8 map: with one patch, the
// original CSRNet loss. Returns it; when it is not finite nothing is updated.
double TrainStep(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                 Precision precision, c10::Device device);

// A step as the ranks agree on it.
struct StepOutcome {
  double loss = 0;       // mean per patch over every rank's batch
  double loss_sum = 0;   // summed over every rank's patches
  int64_t patches = 0;   // every rank's patches
  bool finite = true;    // false when any rank's loss was not finite: then no rank stepped
  bool skipped = false;  // fp16: the gradients overflowed at the loss scale: no rank stepped, the scale halved
  bool stop = false;     // some rank was asked to stop (SIGINT/SIGTERM): all stop after this step
};
// The same step on every rank of `dist` (nullptr: this process alone): the
// gradients are averaged over the ranks (all-reduced, divided by the world
// size) before the optimizer's step, so that W ranks with batch B take the
// step one process takes with batch W x B. `stop` is this rank's request.
// With a `scaler` (fp16) the loss is scaled before backward and the averaged
// gradients unscaled before the step, which is skipped when they overflowed.
StepOutcome TrainStepOn(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                        Precision precision, c10::Device device, Distributed* dist, bool stop,
                        GradScaler* scaler = nullptr);

// The `trainer` tool: trainer SHARDS [options]. Returns the exit code (0 ok,
// 1 error, 2 usage, 128+signal after SIGINT/SIGTERM with a checkpoint).
int RunTrainer(int argc, const char* const* argv);

}  // namespace csr
