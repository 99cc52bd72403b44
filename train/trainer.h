// The CSRNet trainer: one training step and the `trainer` tool itself
// (RunTrainer). Its pieces live beside it: train_options.h (the options),
// checkpoint.h, optimizer.h (SGD and the rate schedule), validation.h, and
// common/eval/train_log.h (the per-epoch log).
#pragma once

#include <torch/data/example.h>
#include <torch/optim/optimizer.h>

#include "train/checkpoint.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/train_options.h"
#include "train/validation.h"

namespace csr {

// One SGD step on a batch with the original loss (sum of squared errors over
// the 1/8 map). Returns the loss; when it is not finite nothing is updated.
double TrainStep(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                 Precision precision, c10::Device device);

// The `trainer` tool: trainer SHARDS [options]. Returns the exit code (0 ok,
// 1 error, 2 usage, 128+signal after SIGINT/SIGTERM with a checkpoint).
int RunTrainer(int argc, const char* const* argv);

}  // namespace csr
