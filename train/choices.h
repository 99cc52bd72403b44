// The typed choices of the training tools' options: those the model tools
// share (deploy/choices.h) and the collective back end.
#pragma once

#include "deploy/choices.h"

namespace csr {

// The collective back end of multi-process training: NCCL for CUDA devices,
// Gloo for the CPU (auto), or either one by name.
enum class DistBackend { kAuto, kGloo, kNccl };

// The weights a run starts from when it loads none: the original's N(0, 0.01)
// for every convolution (made for a back end on an ImageNet front end), or He
// (fan-in) normal for the convolutions followed by ReLU, so that signal and
// gradient keep their scale through all 17 layers of a model trained from
// scratch (the output convolution keeps N(0, 0.01)).
enum class Init { kNormal, kHe };

// The optimizer of a run: the original's SGD with momentum, or Adam.
enum class OptimizerKind { kSgd, kAdam };

}  // namespace csr
