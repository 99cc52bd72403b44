// The trainer's checkpoint (RUN/checkpoint.pt): model, optimizer with its
// momentum, the run's position and statistics, torch's RNG state and the
// effective configuration, so that a resumed run continues exactly.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/optim/optimizer.h>

#include "train/model.h"

namespace csr {

// The layout version written as `format_version`. Checkpoints written before
// the field existed hold version 1's layout and are read as version 1; a
// higher version than this build knows is refused with a clear message.
inline constexpr int64_t kCheckpointFormatVersion = 1;

// Where a run stands; saved in every checkpoint.
struct TrainState {
  int64_t epoch = 0;              // completed epochs
  int64_t batch = 0;              // batches done in the epoch after those
  int64_t step = 0;               // optimizer steps in total
  double best_mae = -1.0;         // best validation MAE so far (-1: none yet)
  int64_t best_epoch = 0;         // epoch (1-based) that reached best_mae
  double loss_sum = 0.0;          // partial epoch: summed loss,
  int64_t patches = 0;            //   patches trained,
  double seconds = 0.0;           //   seconds spent,
  double wait_seconds = 0.0;      //   seconds waiting for data
  double loss_scale = 0.0;        // fp16: the gradient scaler's scale (0: no scaler)
  int64_t loss_scale_growth = 0;  //   and its clean steps since it last changed
};

// Writes model, optimizer (with momentum), state, torch's RNG state and the
// effective configuration to `path` atomically: a crash at any point leaves
// the previous file intact.
void SaveCheckpoint(const std::string& path, CSRNet& model, torch::optim::Optimizer& optimizer, const TrainState& state,
                    const nlohmann::json& config);
// Restores all of it into an already built model (same back end) and
// optimizer. Throws csr::Error naming the file when it is missing, corrupt,
// not a checkpoint, or holds mismatched tensors.
TrainState LoadCheckpoint(const std::string& path, CSRNet& model, torch::optim::Optimizer& optimizer);
// The configuration stored in a checkpoint (to continue with the same options).
nlohmann::json ReadCheckpointConfig(const std::string& path);

}  // namespace csr
