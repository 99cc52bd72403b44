// Every option of the `trainer` tool, with its defaults, and their
// registration with the command-line parser (the names of --help and the
// keys of --config files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/cli.h"
#include "train/choices.h"

namespace csr {

// Every option of `trainer`; the in-class values are the defaults (those of
// the original CSRNet trainer where it had one).
struct TrainOptions {
  std::string shards;   // shard set folder written by crop_shards (or the positional argument)
  std::string config;   // JSON file of option values; the command line wins over it
  std::string out;      // run folder; empty = runs/<date-time>, or the checkpoint's folder on --resume
  std::string resume;   // checkpoint to continue exactly (alias --pre); "auto": <out>/checkpoint.pt if it exists
  std::string vgg16;    // ImageNet VGG-16 front end: HDF5 with torchvision names (tools/export_vgg16.py)
  std::string weights;  // start from these CSRNet weights (.h5 original layout or .pt) instead of the init
  Backend backend = Backend::kB;  // back-end variant of the paper: A, B, C or D
  Init init = Init::kNormal;      // weights before --vgg16/--weights: normal (the original's N(0, 0.01)) | he
  bool batch_norm = false;        // BatchNorm2d after every conv while training; model files hold it folded
  int epochs = 400;               // epochs in total (a resumed run continues up to this)
  double lr = 1e-7;               // SGD learning rate
  std::vector<double> lr_steps;   // epochs (1-based) from which the rate is multiplied by lr_gamma, cumulatively
  double lr_gamma = 0.1;          // factor applied at each of lr_steps
  OptimizerKind optimizer = OptimizerKind::kSgd;  // sgd (the original's) | adam (betas 0.9, 0.999; eps 1e-8)
  double momentum = 0.95;                         // SGD momentum (not used by adam)
  double weight_decay = 5e-4;                     // L2 weight decay
  int batch_size = 1;                             // patches per step; a batch only groups records of equal size
  int64_t max_steps = 0;                   // stop after this many steps in total (0 = no limit): smoke runs, benchmarks
  int64_t checkpoint_every = 0;            // also checkpoint every N steps within an epoch (0 = only by time)
  double checkpoint_minutes = 10;          // also checkpoint when this long has passed since the last one (0 = never)
  int64_t seed = 1;                        // seeds the initialisation and each epoch's data order
  int workers = 2;                         // background threads decoding batches
  int prefetch = 4;                        // batches prepared ahead of the step
  int threads = 0;                         // LibTorch compute threads; 0 = every core
  Precision precision = Precision::kFp32;  // auto | fp32 | bf16 | fp16 (train/precision_probe.h resolves auto)
  DeviceChoice device;                     // auto | cpu | cuda | cuda:N
  int eval_tile = 1024;                    // validation images larger than this (pixels a side) run in tiles
  int eval_every = 1;                      // validate every N epochs (and after the last); 0 = never
  DistBackend dist_backend = DistBackend::kAuto;  // several processes: auto (nccl on CUDA, gloo on CPU) | gloo | nccl
  int dist_timeout = 600;                         // seconds a rank waits for the others before it gives up

  // Throws csr::UsageError naming the option, its value and the rule.
  void Check() const;
};

// Registers every field of `opts` with the parser (the names of --help).
void RegisterTrainOptions(ArgParser& parser, TrainOptions* opts);

}  // namespace csr
