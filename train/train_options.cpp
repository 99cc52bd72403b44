#include "train/train_options.h"

#include <cmath>

#include "common/base/error.h"

namespace csr {

void RegisterTrainOptions(ArgParser& p, TrainOptions* o) {
  p.Add("shards", &o->shards, "Shard set folder written by crop_shards (or give it as the argument)");
  p.Add("config", &o->config, "JSON file of option values (keys as the long options); the command line wins");
  p.Add("out", &o->out, "Run folder; empty = runs/<date-time> (with --resume: the checkpoint's folder)");
  p.Add("resume", &o->resume, "Continue exactly from this checkpoint (RUN/checkpoint.pt)");
  p.AddAlias("pre", "resume");
  p.Add("vgg16", &o->vgg16, "ImageNet VGG-16 front end: HDF5 with torchvision names (tools/export_vgg16.py)");
  p.Add("weights", &o->weights, "Start from these CSRNet weights (.h5 original layout or .pt) instead of the init");
  AddBackendOption(p, "backend", &o->backend, "Back-end variant of the paper (dilation 1/2/2,2,2,4,4,4/4)");
  p.Add("epochs", &o->epochs, "Epochs in total (a resumed run continues up to this)");
  p.Add("lr", &o->lr, "SGD learning rate");
  p.Add("lr-steps", &o->lr_steps, "Comma-separated epochs (1-based) from which the rate is multiplied by --lr-gamma");
  p.Add("lr-gamma", &o->lr_gamma, "Factor applied to the rate at each of --lr-steps");
  p.Add("momentum", &o->momentum, "SGD momentum");
  p.Add("weight-decay", &o->weight_decay, "L2 weight decay");
  p.Add("batch-size", &o->batch_size, "Patches per step; a batch only groups records of equal size");
  p.Add("max-steps", &o->max_steps, "Stop after this many steps in total, checkpointed (0 = no limit)");
  p.Add("checkpoint-every", &o->checkpoint_every,
        "Also write the checkpoint every N steps within an epoch (0 = only by --checkpoint-minutes)");
  p.Add("checkpoint-minutes", &o->checkpoint_minutes,
        "Also write the checkpoint mid-epoch when this many minutes have passed since the last (0 = never)");
  p.Add("seed", &o->seed, "Seeds the initialisation and every epoch's data order");
  p.Add("workers", &o->workers, "Background threads that decode batches ahead of the step (0 = in the step)");
  p.Add("prefetch", &o->prefetch, "Batches prepared ahead");
  p.Add("threads", &o->threads, "LibTorch compute threads; 0 = every core");
  AddPrecisionOption(p, "precision", &o->precision);
  AddDeviceOption(p, "device", &o->device);
  p.Add("eval-tile", &o->eval_tile, "Validation images larger than this many pixels a side run in tiles (0 = never)");
  p.Add("eval-every", &o->eval_every, "Validate every N epochs and after the last (0 = never)");
}

// Comparisons are written so that NaN fails them: every bound also refuses NaN.
// The upper bounds stop values that would only exhaust memory or threads.
void CheckTrainOptions(const TrainOptions& o) {
  if (o.shards.empty()) throw UsageError("SHARDS", "no shard set given (trainer SHARDS [options], see --help)");
  if (o.epochs < 1) throw UsageError("--epochs", "must be >= 1");
  if (!(o.lr > 0 && std::isfinite(o.lr))) throw UsageError("--lr", "must be a finite number > 0");
  if (!(o.momentum >= 0 && o.momentum < 1)) throw UsageError("--momentum", "must be in [0, 1)");
  if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay)))
    throw UsageError("--weight-decay", "must be a finite number >= 0");
  if (!(o.lr_gamma > 0 && std::isfinite(o.lr_gamma))) throw UsageError("--lr-gamma", "must be a finite number > 0");
  for (double e : o.lr_steps) {
    if (!(e >= 1 && e < 1e9)) throw UsageError("--lr-steps", "epochs must be numbers >= 1");
  }
  if (o.batch_size < 1 || o.batch_size > 4096) throw UsageError("--batch-size", "must be between 1 and 4096");
  if (o.max_steps < 0) throw UsageError("--max-steps", "must be >= 0");
  if (o.checkpoint_every < 0) throw UsageError("--checkpoint-every", "must be >= 0 (0 = only by time)");
  if (!(o.checkpoint_minutes >= 0 && std::isfinite(o.checkpoint_minutes))) {
    throw UsageError("--checkpoint-minutes", "must be a finite number >= 0 (0 = never by time)");
  }
  if (o.workers < 0 || o.workers > 256) throw UsageError("--workers", "must be between 0 and 256");
  if (o.prefetch < 1 || o.prefetch > 1024) throw UsageError("--prefetch", "must be between 1 and 1024");
  if (o.threads < 0 || o.threads > 1024) throw UsageError("--threads", "must be between 0 (every core) and 1024");
  if (o.eval_tile != 0 && (o.eval_tile < 64 || o.eval_tile > 1 << 20)) {
    throw UsageError("--eval-tile", "must be 0 (never tile) or between 64 and 1048576 pixels");
  }
  if (o.eval_every < 0) throw UsageError("--eval-every", "must be >= 0");
}

}  // namespace csr
