// The CSRNet trainer: options, one training step, validation, checkpoints
// that survive crashes, and the `trainer` tool itself (RunTrainer).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/data/example.h>
#include <torch/optim/sgd.h>

#include "common/base/cli.h"
#include "train/dataset.h"
#include "train/inference.h"
#include "train/model.h"

namespace csr {

// Every option of `trainer`; the in-class values are the defaults (those of
// the original CSRNet trainer where it had one).
struct TrainOptions {
  std::string shards;              // shard set folder written by crop_shards (or the positional argument)
  std::string config;              // JSON file of option values; the command line wins over it
  std::string out;                 // run folder; empty = runs/<date-time>, or the checkpoint's folder on --resume
  std::string resume;              // checkpoint to continue exactly (alias --pre, the original's name)
  std::string vgg16;               // ImageNet VGG-16 front end: HDF5 with torchvision names (tools/export_vgg16.py)
  std::string weights;             // start from these CSRNet weights (.h5 original layout or .pt) instead of the init
  std::string backend = "B";       // back-end variant of the paper: A, B, C or D
  int epochs = 400;                // epochs in total (a resumed run continues up to this)
  double lr = 1e-7;                // SGD learning rate
  std::vector<double> lr_steps;    // epochs (1-based) from which the rate is multiplied by lr_gamma, cumulatively
  double lr_gamma = 0.1;           // factor applied at each of lr_steps
  double momentum = 0.95;          // SGD momentum
  double weight_decay = 5e-4;      // L2 weight decay
  int batch_size = 1;              // patches per step; a batch only groups records of equal size
  int64_t max_steps = 0;           // stop after this many steps in total (0 = no limit): smoke runs, benchmarks
  int64_t checkpoint_every = 0;    // also checkpoint every N steps within an epoch (0 = only by time)
  double checkpoint_minutes = 10;  // also checkpoint when this long has passed since the last one (0 = never)
  int64_t seed = 1;                // seeds the initialisation and each epoch's data order
  int workers = 2;                 // background threads decoding batches
  int prefetch = 4;                // batches prepared ahead of the step
  int threads = 0;                 // LibTorch compute threads; 0 = every core
  std::string precision = "fp32";  // fp32 | bf16 (autocast, channels-last)
  std::string device = "auto";     // auto | cpu | cuda
  int eval_tile = 1024;            // validation images larger than this (pixels a side) run in tiles
  int eval_every = 1;              // validate every N epochs (and after the last); 0 = never
};

// Registers every field of `opts` with the parser (the names of --help).
void RegisterTrainOptions(ArgParser& parser, TrainOptions* opts);

// Where a run stands; saved in every checkpoint.
struct TrainState {
  int64_t epoch = 0;          // completed epochs
  int64_t batch = 0;          // batches done in the epoch after those
  int64_t step = 0;           // optimizer steps in total
  double best_mae = -1.0;     // best validation MAE so far (-1: none yet)
  int64_t best_epoch = 0;     // epoch (1-based) that reached best_mae
  double loss_sum = 0.0;      // partial epoch: summed loss,
  int64_t patches = 0;        //   patches trained,
  double seconds = 0.0;       //   seconds spent,
  double wait_seconds = 0.0;  //   seconds waiting for data
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

// torch::optim::SGD (same options, state, and checkpoint format) whose step
// does weight decay, momentum and the update in one pass over each parameter
// instead of four: the step is memory-bound, so this saves most of its time.
// Falls back to torch's step for dampening, Nesterov or unusual layouts.
class FusedSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// Drops the gradients (instead of zero-filling them) so backward writes
// fresh ones: saves a pass over every parameter per step.
void ClearGradients(torch::optim::Optimizer& optimizer);

// SGD with the options' rate, momentum and weight decay over the model.
FusedSGD MakeOptimizer(CSRNet& model, const TrainOptions& opts);
// The learning rate of a 0-based epoch under lr, lr_steps and lr_gamma.
double LearningRate(const TrainOptions& opts, int64_t epoch);

// One SGD step on a batch with the original loss (sum of squared errors over
// the 1/8 map). Returns the loss; when it is not finite nothing is updated.
double TrainStep(CSRNet& model, torch::optim::Optimizer& optimizer, const torch::data::Example<>& batch,
                 Precision precision, c10::Device device);

struct ValidationResult {
  int64_t images = 0;
  double mae = 0, rmse = 0;                  // against the annotation count (the paper's measure)
  double mae_density = 0, rmse_density = 0;  // against the ground-truth density sum
  double loss = 0;                           // mean sum of squared errors over the 1/8 maps
  bool complete = true;                      // false when `stop` interrupted it
};
// Validation over a dataset of whole images (batch 1), in eval mode without
// autograd, tiled above opts.tile. `stop` is polled between images.
ValidationResult Validate(CSRNet& model, const ShardDataset& test, const InferenceOptions& opts, int workers,
                          const std::function<bool()>& stop = {});

// The `trainer` tool: trainer SHARDS [options]. Returns the exit code (0 ok,
// 1 error, 2 usage, 128+signal after SIGINT/SIGTERM with a checkpoint).
int RunTrainer(int argc, const char* const* argv);

}  // namespace csr
