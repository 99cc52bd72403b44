// predict benchmark: throughput in images/s on 1024 x 768 images (the size
// of ShanghaiTech Part B), this project in fp32 and bf16 next to PyTorch
// (bench/predict_bench_pytorch.py, Debian's python3-torch) doing the same in
// the same run with the same threads, weights and images. Timed per image:
// RGB uint8 in memory -> normalised tensor -> forward -> sum (decoding and
// model loading excluded, one warm-up image first). The configurations run
// in alternating rounds and each keeps its best round, so load from other
// processes on a shared machine hits all alike. Prints the ratios against
// the targets: bf16 >= 5x PyTorch fp32, and >= 1.0x PyTorch with the same
// settings.
//
// With --device cuda (a CUDA LibTorch) both sides run on the GPU and fp16
// joins; --python names a Python whose torch has CUDA.
//
// Usage: predict_bench [--images N] [--rounds N] [--threads N] [--weights FILE] [--warmup N]
//                      [--device cpu|cuda|cuda:N] [--python PATH]
//   --weights defaults to ../shared/data/reference/csrnet_weights.h5, else
//   He-initialised random weights (values do not change the cost).
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "bench/bench_util.h"
#include "common/base/cli.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "deploy/predict.h"
#include "train/model.h"

namespace {

using csr::fs::path;

struct Options {
  int images = 4;              // timed images per configuration
  int warmup = 1;              // untimed images first (oneDNN primitive creation)
  int threads = 0;             // compute threads for both sides; 0 = every core
  int rounds = 2;              // alternating rounds; each configuration keeps its best
  std::string weights;         // CSRNet weights (.h5); default: the shared reference weights or random ones
  std::string work;            // folder for the images and weights; default: a temporary folder
  std::string device = "cpu";  // cpu | cuda | cuda:N, both sides
  std::string python = "/usr/bin/python3";  // Python with torch (with CUDA for --device cuda)
};

void WriteRandomWeights(const std::string& path) {
  torch::manual_seed(1);
  csr::CSRNet model(csr::Backend::kB);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const double fan_in = p.value().dim() == 4 ? static_cast<double>(p.value()[0].numel()) : 1.0;
    torch::nn::init::normal_(p.value(), 0.0, p.value().dim() == 4 ? std::sqrt(2.0 / fan_in) : 0.01);
  }
  csr::SaveWeightsH5(model, path);
}

struct Timing {
  double images_per_s = 0;
  std::vector<double> counts;
};

// One configuration of ours, loaded once and timed once per round.
struct Ours {
  Ours(const Options& o, const std::string& precision) : predictor(Make(o, precision)) {}
  static csr::ModelSettings Make(const Options& o, const std::string& precision) {
    csr::ModelSettings s;
    s.weights = o.weights;
    s.precision = csr::ParsePrecision(precision);
    s.threads = o.threads;
    s.device = csr::ParseDeviceChoice(o.device);
    return s;
  }
  Timing Time(const std::vector<cv::Mat>& images, int warmup) {
    for (int i = 0; i < warmup; ++i) predictor.Density(images[i % images.size()]);
    Timing t;
    const auto start = std::chrono::steady_clock::now();
    for (const cv::Mat& rgb : images) t.counts.push_back(cv::sum(predictor.Density(rgb))[0]);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.images_per_s = static_cast<double>(images.size()) / seconds;
    return t;
  }
  csr::Predictor predictor;
};

std::string Ratio(double value, double target) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%6.2fx  (target >= %.1fx: %s)", value, target, value >= target ? "met" : "NOT met");
  return buf;
}

int Run(int argc, char** argv) {
  Options o;
  csr::ArgParser p("predict_bench", "[options]",
                   "predict throughput on 1024x768 images: ours vs PyTorch, fp32 and bf16");
  p.Add("images", &o.images, "timed images per configuration");
  p.Add("warmup", &o.warmup, "untimed warm-up images per configuration");
  p.Add("rounds", &o.rounds, "alternating rounds of all configurations; the best round of each counts");
  p.Add("threads", &o.threads, "compute threads for both sides (0 = every core)");
  p.Add("weights", &o.weights, "CSRNet weights .h5 (default: ../shared/data/reference/csrnet_weights.h5 or random)");
  p.Add("work", &o.work, "folder for the bench images (default: a temporary folder, removed)");
  p.Add("device", &o.device, "cpu, cuda or cuda:N for both sides (a CUDA LibTorch; fp16 joins on a GPU)");
  p.Add("python", &o.python, "Python with torch, h5py and OpenCV (its torch with CUDA for --device cuda)");
  if (!p.Parse(argc, argv)) return 0;
  csr::ParseDeviceChoice(o.device);  // a bad spelling fails before any work
  if (o.device == "auto") throw csr::UsageError("--device", "name cpu or cuda[:N]: both sides must run on the same");
  if (o.images < 1 || o.rounds < 1) throw csr::UsageError("predict_bench", "--images and --rounds must be >= 1");
  csr::UseInferenceHeap();  // as the predict and evaluate tools do
  if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const bool temp = o.work.empty();
  const path work =
      temp ? csr::fs::temp_directory_path() / ("predict_bench-" + std::to_string(::getpid())) : path(o.work);
  csr::MakeDirs(work);
  if (o.weights.empty()) {
    const path ref = path(CSR_SOURCE_DIR) / ".." / "shared" / "data" / "reference" / "csrnet_weights.h5";
    o.weights = csr::fs::exists(ref) ? ref.lexically_normal().string() : (work / "random_weights.h5").string();
    if (!csr::fs::exists(o.weights)) WriteRandomWeights(o.weights);
  }
  std::vector<cv::Mat> images;
  std::vector<std::string> files;
  for (int i = 0; i < o.images; ++i) {
    images.push_back(bench::BenchImage(i));
    files.push_back((work / ("bench_" + std::to_string(i) + ".png")).string());
    cv::Mat bgr;
    cv::cvtColor(images.back(), bgr, cv::COLOR_RGB2BGR);
    cv::imwrite(files.back(), bgr);
  }
  std::printf("predict_bench: %d images 1024x768, %d threads, weights %s\n", o.images, o.threads, o.weights.c_str());
  std::fflush(stdout);

  // Rounds alternate the configurations so that load from other processes
  // hits all of them alike; each keeps its best round. On a GPU fp16 joins
  // fp32 and bf16 (the density map comes back to the host per image, as
  // predict writes it).
  std::vector<std::string> precisions = {"fp32", "bf16"};
  if (o.device != "cpu") precisions.push_back("fp16");
  std::vector<std::unique_ptr<Ours>> ours;
  for (const std::string& name : precisions) ours.push_back(std::make_unique<Ours>(o, name));
  std::string joined;
  for (const std::string& name : precisions) joined += (joined.empty() ? "" : ",") + name;
  std::string cmd = o.python + " " CSR_SOURCE_DIR "/bench/predict_bench_pytorch.py --weights " + o.weights +
                    " --threads " + std::to_string(o.threads) + " --warmup " + std::to_string(o.warmup) + " --device " +
                    o.device + " --precisions " + joined;
  for (const std::string& f : files) cmd += " " + f;
  const path json_path = work / "pytorch.json";
  std::vector<Timing> best(precisions.size());
  std::vector<double> theirs(precisions.size(), 0.0);
  bool have_torch = true;
  std::string torch_version;
  nlohmann::json torch_counts;
  for (int r = 1; r <= o.rounds; ++r) {
    std::printf("round %d: ours", r);
    for (size_t k = 0; k < precisions.size(); ++k) {
      const Timing t = ours[k]->Time(images, o.warmup);
      if (t.images_per_s > best[k].images_per_s) best[k] = t;
      std::printf(" %s %.3f", precisions[k].c_str(), t.images_per_s);
    }
    std::printf(" images/s");
    if (have_torch && std::system((cmd + " >" + json_path.string()).c_str()) == 0) {
      const nlohmann::json py = nlohmann::json::parse(csr::ReadTextFile(json_path));
      std::printf("; PyTorch");
      for (size_t k = 0; k < precisions.size(); ++k) {
        const double ips = py[precisions[k]]["images_per_s"];
        std::printf(" %s %.3f", precisions[k].c_str(), ips);
        if (k == 0 && ips > theirs[0]) torch_counts = py["fp32"]["counts"];
        theirs[k] = std::max(theirs[k], ips);
      }
      std::printf(" images/s");
      torch_version = py["torch"].get<std::string>();
    } else {
      have_torch = false;
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  std::printf("\nbest of %d rounds, %s          images/s\n", o.rounds, o.device.c_str());
  for (size_t k = 0; k < precisions.size(); ++k) {
    std::printf("%-22s %12.3f\n", ("csrnet-cpp " + precisions[k]).c_str(), best[k].images_per_s);
  }
  if (!have_torch) {
    std::printf("\nPyTorch side failed (needs torch, h5py and OpenCV in %s): no ratios\n", o.python.c_str());
  } else {
    for (size_t k = 0; k < precisions.size(); ++k) {
      std::printf("%-22s %12.3f\n", ("PyTorch " + torch_version + " " + precisions[k]).c_str(), theirs[k]);
    }
    std::printf("\n");
    // The CPU's target for bf16 against PyTorch fp32; a GPU has none yet
    // (not measured), so its ratios print without one.
    for (size_t k = 1; k < precisions.size(); ++k) {
      const double r = best[k].images_per_s / theirs[0];
      if (o.device == "cpu" && precisions[k] == "bf16") {
        std::printf("ours bf16 / PyTorch fp32: %s\n", Ratio(r, 5.0).c_str());
      } else {
        std::printf("ours %s / PyTorch fp32: %6.2fx\n", precisions[k].c_str(), r);
      }
    }
    for (size_t k = 0; k < precisions.size(); ++k) {
      std::printf("ours %s / PyTorch %s: %s\n", precisions[k].c_str(), precisions[k].c_str(),
                  Ratio(best[k].images_per_s / theirs[k], 1.0).c_str());
    }
    // Same work on both sides: the fp32 counts agree to float rounding.
    double worst = 0;
    for (size_t i = 0; i < best[0].counts.size() && i < torch_counts.size(); ++i) {
      const double t = torch_counts[i];
      worst = std::max(worst, std::abs(best[0].counts[i] - t) / std::max(1e-9, std::abs(t)));
    }
    std::printf("fp32 counts vs PyTorch: largest relative difference %.2e\n", worst);
  }
  if (temp) csr::fs::remove_all(work);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("predict_bench", [&] { return Run(argc, argv); });
}
