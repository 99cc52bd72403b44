// trainer benchmark: training steps/s of CSRNet on 512 x 384 crops (the size
// of ShanghaiTech Part B's quarter crops), batch 1, the trainer's own step
// (TrainStep + FusedSGD) in fp32 and in bf16 autocast with channels-last
// tensors, next to PyTorch 1.13 (bench/train_bench_pytorch.py: the original
// model and training step) in fp32 -- the original configuration -- and in
// bf16 with the standard autocast recipe, same threads, in one run (with
// --device cuda both sides also time fp16 with a gradient scaler); each
// figure is the median step time. Prints the
// ratios against the targets: ours >= 4x the original (PyTorch fp32, batch
// 1), and >= 1.0x PyTorch with the same precision. PyTorch runs in a child
// process answering one step per request, so the four configurations
// alternate step by step and a change in machine load hits them alike.
//
// Then (unless --converge-steps 0) a convergence check: the same model,
// data order and learning rate trained on a synthetic shard set in fp32 and
// in bf16; prints both loss curves and how far apart they end.
//
// Usage: train_bench [--threads N] [--steps N] [--warmup N] [--width W] [--height H] [--python PATH] [--no-pytorch]
//                    [--converge-steps N] [--work DIR] [--device cpu|cuda|cuda:N]
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <ATen/Context.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include "common/base/cli.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "tests/fixtures/synthetic_shards.h"
#include "train/dataset.h"
#include "train/inference.h"
#include "train/model.h"
#include "train/trainer.h"

namespace {

using csr::Precision;

struct Options {
  int threads = 0;                          // compute threads for both sides; 0 = every core
  int steps = 8;                            // timed steps per configuration (0 = skip the speed part)
  int warmup = 2;                           // untimed steps first (oneDNN primitive creation, allocator warm-up)
  int width = 512, height = 384;            // crop size
  std::string python = "/usr/bin/python3";  // Debian's Python with python3-torch
  bool no_pytorch = false;                  // skip the PyTorch side
  int converge_steps = 128;                 // steps per precision for the convergence check (0 = skip)
  std::string work;                         // folder for the synthetic shards; default: a temporary folder
  std::string device = "cpu";  // cpu | cuda | cuda:N (the speed part; the convergence check runs on the CPU)
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

// The trainer's step on a fixed random crop (fp16: with the gradient
// scaler, as the trainer runs it).
class OurTrainer {
 public:
  OurTrainer(Precision precision, int width, int height, c10::Device device) : precision_(precision), device_(device) {
    torch::manual_seed(1);
    model_ = csr::CSRNet(csr::Backend::kB);
    csr::InitWeights(model_);
    csr::PrepareModelForTraining(model_, device, precision);
    optimizer_ = std::make_unique<csr::FusedSGD>(csr::MakeOptimizer(model_, csr::TrainOptions{}));
    if (precision == Precision::kFp16) scaler_ = std::make_unique<csr::GradScaler>();
    batch_ = {torch::randn({1, 3, height, width}), torch::rand({1, 1, height / 8, width / 8})};
    if (device.is_cuda()) batch_ = {batch_.data.pin_memory(), batch_.target.pin_memory()};
  }
  double Step() {
    const auto start = std::chrono::steady_clock::now();
    csr::TrainStepOn(model_, *optimizer_, batch_, precision_, device_, nullptr, false, scaler_.get());
    if (device_.is_cuda()) torch::cuda::synchronize();  // the step's kernels, not just their launches
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  Precision precision_;
  c10::Device device_;
  csr::CSRNet model_{nullptr};
  std::unique_ptr<csr::FusedSGD> optimizer_;
  std::unique_ptr<csr::GradScaler> scaler_;
  torch::data::Example<> batch_;
};

// bench/train_bench_pytorch.py --serve in a child process: one PyTorch step
// per request, so its steps interleave with ours one by one.
class PyTorchTrainer {
 public:
  PyTorchTrainer(const Options& o, int threads) {
    const std::string script = std::string(CSR_SOURCE_DIR) + "/bench/train_bench_pytorch.py";
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) throw csr::Error("pipe", "cannot create");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      const std::string t = std::to_string(threads), w = std::to_string(o.width), h = std::to_string(o.height);
      execl(o.python.c_str(), o.python.c_str(), script.c_str(), "--serve", "--threads", t.c_str(), "--width", w.c_str(),
            "--height", h.c_str(), "--device", o.device.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    version_ = Ask("version");
  }
  ~PyTorchTrainer() {
    std::fputs("quit\n", in_);
    std::fclose(in_);
    std::fclose(out_);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  double Step(const std::string& precision) { return std::atof(Ask(precision).c_str()); }
  const std::string& version() const { return version_; }

 private:
  std::string Ask(const std::string& request) {
    std::fprintf(in_, "%s\n", request.c_str());
    std::fflush(in_);
    char line[128];
    if (!std::fgets(line, sizeof line, out_)) {
      throw csr::Error("bench/train_bench_pytorch.py",
                       "no answer from PyTorch (is python3-torch installed? apt-get install python3-torch)");
    }
    std::string answer(line);
    while (!answer.empty() && (answer.back() == '\n' || answer.back() == '\r')) answer.pop_back();
    if (answer.rfind("error", 0) == 0) throw csr::Error("bench/train_bench_pytorch.py", answer);
    return answer;
  }

  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  std::string version_;
};

void Speed(const Options& o, int threads, c10::Device device) {
  // The CPU's precisions, and on CUDA also fp16 with the gradient scaler.
  std::vector<Precision> precisions = {Precision::kFp32, Precision::kBf16};
  if (device.is_cuda()) precisions.push_back(Precision::kFp16);
  std::vector<std::unique_ptr<OurTrainer>> ours;
  for (Precision p : precisions) ours.push_back(std::make_unique<OurTrainer>(p, o.width, o.height, device));
  std::unique_ptr<PyTorchTrainer> py;
  if (!o.no_pytorch) py = std::make_unique<PyTorchTrainer>(o, threads);
  std::vector<std::vector<double>> our_t(precisions.size()), py_t(precisions.size());
  double load = 0;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    const bool timed = i >= o.warmup;
    std::cerr << (timed ? "step " : "warm-up ") << (timed ? i - o.warmup + 1 : i + 1) << "/"
              << (timed ? o.steps : o.warmup) << ":";
    for (size_t k = 0; k < precisions.size(); ++k) {
      const std::string name = csr::PrecisionName(precisions[k]);
      std::cerr << " ours " << name << std::flush;
      const double a = ours[k]->Step();
      std::cerr << ", PyTorch " << name << (k + 1 < precisions.size() ? "," : "") << std::flush;
      const double b = py ? py->Step(name) : NAN;
      if (timed) {
        our_t[k].push_back(a);
        py_t[k].push_back(b);
      }
    }
    std::cerr << "\n";
    if (timed) load += LoadAverage() / o.steps;
  }
  std::printf(
      "\nCSRNet training step, %dx%d crop, batch 1, %s, %d threads; %d steps each, the %zu configurations\n"
      "alternating step by step (mean load average meanwhile %.2f)\n",
      o.width, o.height, device.str().c_str(), threads, o.steps, 2 * precisions.size(), load);
  std::printf("  %-48s %14s %12s %9s\n", "configuration", "median s/step", "best s/step", "steps/s");
  auto row = [](const std::string& name, const std::vector<double>& t) {
    std::printf("  %-48s %14.4f %12.4f %9.3f\n", name.c_str(), Median(t), *std::min_element(t.begin(), t.end()),
                1.0 / Median(t));
  };
  auto recipe = [&](Precision p) -> std::string {
    switch (p) {
      case Precision::kFp32:
        return "fp32";
      case Precision::kBf16:
        return "bf16 autocast, channels-last";
      case Precision::kFp16:
        return "fp16 autocast + GradScaler, channels-last";
      case Precision::kAuto:  // never timed as such: the bench names what auto resolved to
        return "auto";
    }
    return "?";
  };
  for (size_t k = 0; k < precisions.size() && py; ++k) {
    row("PyTorch " + py->version() + " " + recipe(precisions[k]) + (k == 0 ? " (the original)" : ""), py_t[k]);
  }
  for (size_t k = 0; k < precisions.size(); ++k) row("ours " + recipe(precisions[k]), our_t[k]);
  if (!py) return;
  auto ratio = [](const std::string& what, const std::vector<double>& ours, const std::vector<double>& theirs,
                  double target) {
    const double r = Median(theirs) / Median(ours);
    const double best = *std::min_element(theirs.begin(), theirs.end()) / *std::min_element(ours.begin(), ours.end());
    std::printf("  %-52s %6.2fx (best %5.2fx)", what.c_str(), r, best);
    if (target > 0) std::printf("  target >= %.1fx: %s", target, r >= target ? "MET" : "NOT MET");
    std::printf("\n");
  };
  std::printf("\nratios of steps/s, ours / PyTorch (from the medians; from the best steps in brackets):\n");
  // The CPU's target against the original; on a GPU the same comparison is
  // printed without one (no target was set for a machine not yet measured).
  for (size_t k = 1; k < precisions.size(); ++k) {
    ratio("ours " + csr::PrecisionName(precisions[k]) + " vs the original (PyTorch fp32, batch 1)", our_t[k], py_t[0],
          device.is_cpu() && precisions[k] == Precision::kBf16 ? 4.0 : 0.0);
  }
  for (size_t k = 0; k < precisions.size(); ++k) {
    const std::string name = csr::PrecisionName(precisions[k]);
    ratio("ours " + name + " vs PyTorch " + name + " (same precision)", our_t[k], py_t[k], 1.0);
  }
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
  csr::PrepareModelForTraining(model, cpu, precision);
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
  csr::fs::path work =
      o.work.empty() ? csr::fs::temp_directory_path() / csr::StrCat("train_bench_", ::getpid()) : csr::fs::path(o.work);
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
    p.Add("steps", &o.steps, "Timed steps per configuration (0 = skip the speed part)");
    p.Add("warmup", &o.warmup, "Untimed steps before timing");
    p.Add("width", &o.width, "Crop width");
    p.Add("height", &o.height, "Crop height");
    p.Add("python", &o.python, "Python with torch (Debian: apt-get install python3-torch)");
    p.Add("no-pytorch", &o.no_pytorch, "Skip the PyTorch side");
    p.Add("converge-steps", &o.converge_steps, "Steps per precision in the convergence check (0 = skip)");
    p.Add("work", &o.work, "Folder for the synthetic shards (default: a temporary folder)");
    p.Add("device", &o.device,
          "cpu, cuda or cuda:N: where both sides time their steps (a CUDA LibTorch; "
          "--python then names a Python whose torch has CUDA)");
    if (!p.Parse(argc, argv)) return 0;
    const c10::Device device = csr::ResolveDevice(csr::ParseDeviceChoice(o.device));
    const int threads = csr::SetThreads(o.threads);
    csr::UseTrainingHeap();  // as the trainer does
    std::cerr << "train_bench: " << threads << " threads, " << device.str() << ", load average " << LoadAverage()
              << "\n";
    if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);  // as the trainer does (PyTorch's side too)
    if (o.steps > 0) Speed(o, threads, device);
    if (o.converge_steps > 0) Convergence(o);
    return 0;
  });
}
