#include "train/train_options.h"

#include <cmath>

#include "common/base/error.h"

namespace csr {

void RegisterTrainOptions(ArgParser& p, TrainOptions* o) {
  p.Add("shards", &o->shards, "Shard set folder written by crop_shards (or give it as the argument)");
  p.Add("config", &o->config, "JSON file of option values (keys as the long options); the command line wins");
  p.Add("out", &o->out, "Run folder; empty = runs/<date-time> (with --resume: the checkpoint's folder)");
  p.Add("resume", &o->resume,
        "Continue exactly from this checkpoint (RUN/checkpoint.pt); auto = --out's checkpoint.pt if it exists, else "
        "start (the same command then starts and restarts a job)");
  p.AddAlias("pre", "resume");
  p.Add("vgg16", &o->vgg16, "ImageNet VGG-16 front end: HDF5 with torchvision names (tools/export_vgg16.py)");
  p.Add("weights", &o->weights, "Start from these CSRNet weights (.h5 original layout or .pt) instead of the init");
  AddBackendOption(p, "backend", &o->backend, "Back-end variant of the paper (dilation 1/2/2,2,2,4,4,4/4)");
  p.AddEnum<Init>("init", &o->init, {{"normal", Init::kNormal}, {"he", Init::kHe}},
                  "Initial weights: normal = N(0, 0.01) as the original (for a back end on --vgg16); he = He fan-in "
                  "normal, for training every layer from scratch (docs/training.md)");
  p.Add("batch-norm", &o->batch_norm,
        "Train with a batch normalisation after every convolution (learns from scratch in fewer steps); "
        "model_best.pt/.h5 hold it folded into the convolutions, a plain CSRNet for evaluate, predict and ONNX. "
        "Not with --vgg16, --weights or several processes");
  p.Add("epochs", &o->epochs, "Epochs in total (a resumed run continues up to this)");
  p.Add("lr", &o->lr, "Learning rate");
  p.Add("lr-steps", &o->lr_steps, "Comma-separated epochs (1-based) from which the rate is multiplied by --lr-gamma");
  p.Add("lr-gamma", &o->lr_gamma, "Factor applied to the rate at each of --lr-steps");
  p.AddEnum<OptimizerKind>("optimizer", &o->optimizer, {{"sgd", OptimizerKind::kSgd}, {"adam", OptimizerKind::kAdam}},
                           "sgd = the original's (--momentum, --weight-decay); adam = torch's Adam (betas 0.9, "
                           "0.999, eps 1e-8, --weight-decay as L2), the quicker one from scratch");
  p.Add("momentum", &o->momentum, "SGD momentum (not used by --optimizer adam)");
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
  p.AddEnum<DistBackend>("dist-backend", &o->dist_backend,
                         {{"auto", DistBackend::kAuto}, {"gloo", DistBackend::kGloo}, {"nccl", DistBackend::kNccl}},
                         "Several processes (torchrun, srun): collectives over nccl (CUDA) or gloo (CPU); auto picks "
                         "by device");
  p.Add("dist-timeout", &o->dist_timeout, "Several processes: seconds a rank waits for the others before it stops");
}

// The upper bounds stop values that would only exhaust memory or threads;
// every bound also refuses NaN (see CheckRange).
void TrainOptions::Check() const {
  CheckThat(!shards.empty(), "SHARDS", "nothing", "no shard set given (trainer SHARDS [options], see --help)");
  CheckRange("--epochs", epochs, 1, 1000000);
  CheckThat(lr > 0 && std::isfinite(lr), "--lr", lr, "must be a finite number > 0");
  CheckThat(momentum >= 0 && momentum < 1, "--momentum", momentum, "must be in [0, 1)");
  CheckThat(weight_decay >= 0 && std::isfinite(weight_decay), "--weight-decay", weight_decay,
            "must be a finite number >= 0");
  CheckThat(lr_gamma > 0 && std::isfinite(lr_gamma), "--lr-gamma", lr_gamma, "must be a finite number > 0");
  for (double e : lr_steps) CheckThat(e >= 1 && e < 1e9, "--lr-steps", e, "epochs must be numbers >= 1");
  CheckRange("--batch-size", batch_size, 1, 4096);
  CheckThat(max_steps >= 0, "--max-steps", max_steps, "must be >= 0 (0 = no limit)");
  CheckThat(checkpoint_every >= 0, "--checkpoint-every", checkpoint_every, "must be >= 0 (0 = only by time)");
  CheckThat(checkpoint_minutes >= 0 && std::isfinite(checkpoint_minutes), "--checkpoint-minutes", checkpoint_minutes,
            "must be a finite number >= 0 (0 = never by time)");
  CheckRange("--workers", workers, 0, 256);
  CheckRange("--prefetch", prefetch, 1, 1024);
  CheckRange("--threads", threads, 0, 1024, "0 = every core");
  if (eval_tile != 0) CheckRange("--eval-tile", eval_tile, 64, 1 << 20, "or 0: never tile");
  CheckThat(eval_every >= 0, "--eval-every", eval_every, "must be >= 0 (0 = never)");
  CheckRange("--dist-timeout", dist_timeout, 1, 86400, "seconds");
  CheckThat(!batch_norm || (vgg16.empty() && weights.empty()), "--batch-norm", "on",
            "trains from the init: not with --vgg16 or --weights (their networks have no batch normalisation)");
}

}  // namespace csr
