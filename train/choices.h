// The typed choices of the training tools' options: those the model tools
// share (deploy/choices.h) and the collective back end.
#pragma once

#include "deploy/choices.h"

namespace csr {

// The collective back end of multi-process training: NCCL for CUDA devices,
// Gloo for the CPU (auto), or either one by name.
enum class DistBackend { kAuto, kGloo, kNccl };

}  // namespace csr
