// trainer benchmark: training steps/s of CSRNet on 512 x 384 crops (the size
// of ShanghaiTech Part B's quarter crops), batch 1, the trainer's own step
// (TrainStep + FusedSGD) in fp32 and in bf16 autocast with channels-last
// tensors, next to PyTorch 1.13 (bench/train_bench_pytorch.py: the original
// model and training step) in fp32 -- the original configuration -- and in
// bf16 with the standard autocast recipe, same threads, in one run. Rounds
// alternate the four configurations so a change in machine load hits them
// alike; each figure is the median step time over all rounds. Prints the
// ratios against the targets: ours >= 4x the original (PyTorch fp32, batch
// 1), and >= 1.0x PyTorch with the same precision.
//
// Then (unless --converge-steps 0) a convergence check: the same model,
// data order and learning rate trained on a synthetic shard set in fp32 and
// in bf16; prints both loss curves and how far apart they end.
//
// Usage: train_bench [--threads N] [--steps N] [--warmup N] [--rounds N]
//                    [--width W] [--height H] [--python PATH] [--no-pytorch]
//                    [--converge-steps N] [--work DIR]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include "common/cli.h"
#include "common/fs.h"
#include "train/dataset.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/synthetic_shards.h"
#include "train/trainer.h"

namespace {

using csr::Precision;

struct Options {
  int threads = 0;                       // compute threads for both sides; 0 = every core
  int steps = 4;                         // timed steps per configuration and round
  int warmup = 2;                        // untimed steps first (oneDNN primitive creation, allocator warm-up)
  int rounds = 2;                        // alternations of the four configurations
  int width = 512, height = 384;         // crop size
  std::string python = "/usr/bin/python3";  // Debian's Python with python3-torch
  bool no_pytorch = false;               // skip the PyTorch side
  int converge_steps = 128;              // steps per precision for the convergence check (0 = skip)
  std::string work;                      // folder for the synthetic shards; default: a temporary folder
};

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double LoadAverage() {
  std::ifstream f("/proc/loadavg");
  double load = NAN;
  f >> load;
  return load;
}

// The trainer's step on a fixed random crop, timed.
std::vector<double> TimeOurs(const Options& o, Precision precision) {
  torch::manual_seed(1);
  csr::CSRNet model(csr::Backend::kB);
  csr::InitWeights(model);
  const c10::Device cpu(c10::kCPU);
  csr::PrepareModel(model, cpu, precision);
  csr::TrainOptions defaults;
  csr::FusedSGD optimizer = csr::MakeOptimizer(model, defaults);
  torch::data::Example<> batch{torch::randn({1, 3, o.height, o.width}), torch::rand({1, 1, o.height / 8, o.width / 8})};
  std::vector<double> times;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    csr::TrainStep(model, optimizer, batch, precision, cpu);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i >= o.warmup) times.push_back(s);
  }
  return times;
}

std::vector<double> TimePyTorch(const Options& o, const std::string& precision, int threads) {
  const std::string script = std::string(CSR_SOURCE_DIR) + "/bench/train_bench_pytorch.py";
  const std::string cmd = csr::StrCat(o.python, " ", script, " --precision ", precision, " --threads ", threads,
                                      " --steps ", o.steps, " --warmup ", o.warmup, " --width ", o.width,
                                      " --height ", o.height);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw csr::Error(o.python, "cannot run");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    throw csr::Error(script, csr::StrCat("failed (exit ", rc, "); is python3-torch installed? apt-get install "
                                         "python3-torch"));
  }
  const auto json = nlohmann::json::parse(out.substr(out.find('{')));
  return json["step_seconds"].get<std::vector<double>>();
}

void Speed(const Options& o, int threads) {
  std::vector<double> ours_fp32, ours_bf16, py_fp32, py_bf16;
  auto append = [](std::vector<double>& to, const std::vector<double>& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  for (int r = 0; r < o.rounds; ++r) {
    std::cerr << "round " << r + 1 << "/" << o.rounds << ": ours fp32" << std::flush;
    append(ours_fp32, TimeOurs(o, Precision::kFp32));
    if (!o.no_pytorch) {
      std::cerr << ", PyTorch fp32" << std::flush;
      append(py_fp32, TimePyTorch(o, "fp32", threads));
    }
    std::cerr << ", ours bf16" << std::flush;
    append(ours_bf16, TimeOurs(o, Precision::kBf16));
    if (!o.no_pytorch) {
      std::cerr << ", PyTorch bf16" << std::flush;
      append(py_bf16, TimePyTorch(o, "bf16", threads));
    }
    std::cerr << " (load average " << LoadAverage() << ")\n";
  }
  const double of = Median(ours_fp32), ob = Median(ours_bf16), pf = Median(py_fp32), pb = Median(py_bf16);
  std::printf("\nCSRNet training step, %dx%d crop, batch 1, %d threads, median of %zu steps each\n", o.width,
              o.height, threads, ours_fp32.size());
  std::printf("  %-44s %9s %9s\n", "configuration", "s/step", "steps/s");
  auto row = [](const char* name, double s) { std::printf("  %-44s %9.3f %9.3f\n", name, s, 1.0 / s); };
  if (!o.no_pytorch) {
    row("PyTorch 1.13 fp32 (the original configuration)", pf);
    row("PyTorch 1.13 bf16 autocast, channels-last", pb);
  }
  row("ours fp32", of);
  row("ours bf16 autocast, channels-last", ob);
  if (o.no_pytorch) return;
  auto ratio = [](const char* what, double ours, double theirs, double target) {
    const double r = theirs / ours;
    std::printf("  %-58s %6.2fx  (target >= %.1fx) %s\n", what, r, target, r >= target ? "MET" : "NOT MET");
  };
  std::printf("\nratios (steps/s ours / steps/s PyTorch):\n");
  ratio("ours bf16 vs the original (PyTorch fp32, batch 1)", ob, pf, 4.0);
  ratio("ours fp32 vs PyTorch fp32 (same precision)", of, pf, 1.0);
  ratio("ours bf16 vs PyTorch bf16 (same precision)", ob, pb, 1.0);
}

// Kaiming-style init: from the original N(0, 0.01) nothing but the biases
// moves within a few hundred steps, which would make any two curves agree.
void HeInit(csr::CSRNet& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) {
      torch::nn::init::normal_(p, 0.0, std::sqrt(2.0 / static_cast<double>(p[0].numel())));
    } else {
      torch::nn::init::zeros_(p);
    }
  }
}

std::vector<double> TrainCurve(const csr::ShardDataset& data, Precision precision, int steps) {
  torch::manual_seed(3);
  csr::CSRNet model(csr::Backend::kB);
  HeInit(model);
  const c10::Device cpu(c10::kCPU);
  csr::PrepareModel(model, cpu, precision);
  csr::TrainOptions opts;
  opts.lr = 1e-7;
  csr::FusedSGD optimizer = csr::MakeOptimizer(model, opts);
  std::vector<double> losses;
  const auto sizes = csr::ExampleSizes(data);
  for (int64_t epoch = 0; static_cast<int>(losses.size()) < steps; ++epoch) {
    csr::BatchLoader loader(data, csr::PlanEpoch(sizes, 1, 11, epoch), 0, 1, 4);
    torch::data::Example<> batch;
    while (static_cast<int>(losses.size()) < steps && loader.Next(&batch)) {
      losses.push_back(csr::TrainStep(model, optimizer, batch, precision, cpu));
    }
  }
  return losses;
}

void Convergence(const Options& o) {
  csr::fs::path work = o.work.empty() ? csr::fs::temp_directory_path() / csr::StrCat("train_bench_", ::getpid())
                                      : csr::fs::path(o.work);
  csr::SyntheticShardSpec spec;
  spec.train = 32;
  spec.test = 1;
  spec.train_w = 128;
  spec.train_h = 96;
  spec.max_heads = 30;
  csr::fs::remove_all(work / "synthetic");
  csr::WriteSyntheticShards(work / "synthetic", spec);
  auto shards = std::make_shared<const csr::ShardSet>(work / "synthetic");
  csr::ShardDataset data(shards, "train", true);
  std::cerr << "convergence check: " << o.converge_steps << " steps per precision on " << data.size().value()
            << " synthetic 128x96 patches\n";
  const std::vector<double> fp32 = TrainCurve(data, Precision::kFp32, o.converge_steps);
  const std::vector<double> bf16 = TrainCurve(data, Precision::kBf16, o.converge_steps);
  if (o.work.empty()) csr::fs::remove_all(work);
  const int window = std::max(1, o.converge_steps / 8);
  std::printf("\nbf16 convergence (same init, data order and lr; mean loss per %d steps):\n", window);
  std::printf("  %-12s %12s %12s %10s\n", "steps", "fp32", "bf16", "bf16/fp32");
  double first_fp32 = 0, last_fp32 = 0, last_bf16 = 0;
  for (int start = 0; start + window <= o.converge_steps; start += window) {
    double a = 0, b = 0;
    for (int i = start; i < start + window; ++i) {
      a += fp32[i];
      b += bf16[i];
    }
    a /= window;
    b /= window;
    if (start == 0) first_fp32 = a;
    last_fp32 = a;
    last_bf16 = b;
    std::printf("  %4d-%-7d %12.4f %12.4f %10.3f\n", start + 1, start + window, a, b, b / a);
  }
  std::printf("  fp32 loss fell to %.1f%% of its first window; bf16 ends %.1f%% %s fp32\n",
              100.0 * last_fp32 / first_fp32, 100.0 * std::abs(last_bf16 / last_fp32 - 1.0),
              last_bf16 >= last_fp32 ? "above" : "below");
}

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("train_bench", [&] {
    Options o;
    csr::ArgParser p("train_bench", "[options]", "Training throughput of ours vs PyTorch, and bf16 convergence.");
    p.Add("threads", &o.threads, "Compute threads for both sides; 0 = every core");
    p.Add("steps", &o.steps, "Timed steps per configuration and round");
    p.Add("warmup", &o.warmup, "Untimed steps before timing");
    p.Add("rounds", &o.rounds, "Alternations of the four configurations (0 = skip the speed part)");
    p.Add("width", &o.width, "Crop width");
    p.Add("height", &o.height, "Crop height");
    p.Add("python", &o.python, "Python with torch (Debian: apt-get install python3-torch)");
    p.Add("no-pytorch", &o.no_pytorch, "Skip the PyTorch side");
    p.Add("converge-steps", &o.converge_steps, "Steps per precision in the convergence check (0 = skip)");
    p.Add("work", &o.work, "Folder for the synthetic shards (default: a temporary folder)");
    if (!p.Parse(argc, argv)) return 0;
    const int threads = csr::SetThreads(o.threads);
    std::cerr << "train_bench: " << threads << " threads, load average " << LoadAverage() << "\n";
    if (o.rounds > 0) Speed(o, threads);
    if (o.converge_steps > 0) Convergence(o);
    return 0;
  });
}
