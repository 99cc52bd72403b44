// The two engines of predict side by side: LibTorch (fp32, packed oneDNN
// weights) and ONNX through OpenCV's DNN module (fp32), on the same 1024 x 768
// images (the size of ShanghaiTech Part B) with the same weights and threads,
// in one run. Each engine runs in its own child process (this executable with
// --child), so each reports its own peak memory; the two alternate over the
// rounds and each keeps its best, so load from other processes hits both
// alike. Timed per image: RGB uint8 in memory -> normalised input -> forward
// -> sum (decoding, model loading and the warm-up images excluded). Prints
// images/s, effective GFLOP/s (the direct convolutions' FLOPs per image x
// images/s; an algorithm that needs fewer, such as Winograd, can exceed the
// FMA peak) as a fraction of the machine's measured fp32 FMA peak, the ratio
// ONNX / LibTorch, peak memory, and how far the counts agree.
//
// Usage: predict_engines_bench [--images N] [--rounds N] [--threads N] [--weights FILE.h5] [--work DIR]
//   The ONNX model is exported from --weights with tools/export_onnx.py
//   (Debian's python3-torch, python3-h5py, python3-onnx).
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/base/cli.h"
#include "common/base/fs.h"
#include "common/base/heap.h"
#include "deploy/predictor.h"
#include "train/model.h"

namespace {

struct Options {
  int images = 4;
  int warmup = 1;
  int threads = 0;
  int rounds = 2;
  std::string weights;
  std::string work;
  bool keep = false;
  // Child mode.
  std::string child;  // libtorch | onnx
  std::string model;
  std::string out;
};

// Multiply-adds x 2 of CSRNet (any back end: dilation does not change the
// count) on an h x w image.
double CsrnetFlops(int h, int w) {
  const int front[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512};
  const int back[] = {512, 512, 512, 256, 128, 64};
  double flops = 0, hh = h, ww = w;
  int in = 3;
  for (int c : front) {
    if (c == 0) {
      hh = std::floor(hh / 2);
      ww = std::floor(ww / 2);
      continue;
    }
    flops += 2.0 * 9 * in * c * hh * ww;
    in = c;
  }
  for (int c : back) {
    flops += 2.0 * 9 * in * c * hh * ww;
    in = c;
  }
  return flops + 2.0 * in * hh * ww;
}

int Child(const Options& o) {
  csr::UseInferenceHeap();  // as predict does
  csr::ModelSettings s;
  s.weights = o.model;
  s.engine = o.child == "onnx" ? csr::Engine::kOnnx : csr::Engine::kLibTorch;
  s.threads = o.threads;
  s.device.kind = csr::DeviceChoice::Kind::kCpu;
  const auto load_start = bench::Clock::now();
  csr::Predictor predictor(s);
  const double load_s = bench::Seconds(load_start);
  std::vector<cv::Mat> images;
  for (int i = 0; i < o.images; ++i) images.push_back(bench::BenchImage(i));
  for (int i = 0; i < o.warmup; ++i) predictor.Density(images[i % images.size()]);
  nlohmann::json counts = nlohmann::json::array();
  const auto start = bench::Clock::now();
  for (const cv::Mat& rgb : images) counts.push_back(cv::sum(predictor.Density(rgb))[0]);
  const double seconds = bench::Seconds(start);
  const nlohmann::json j = {{"images_per_s", images.size() / seconds},
                            {"load_s", load_s},
                            {"counts", counts},
                            {"describe", predictor.Describe()}};
  csr::WriteTextFileAtomic(o.out, j.dump());
  return 0;
}

struct Side {
  Side(std::string n, std::string m) : name(std::move(n)), model(std::move(m)) {}
  std::string name;
  std::string model;
  double best = 0, rss_mb = 0, load_s = 0;
  std::vector<double> counts;
  std::string describe;
};

int Run(int argc, char** argv) {
  Options o;
  csr::ArgParser p("predict_engines_bench", "[options]",
                   "predict's engines side by side on 1024x768 images: LibTorch fp32 vs ONNX (OpenCV DNN) fp32");
  p.Add("images", &o.images, "timed images per engine and round");
  p.Add("warmup", &o.warmup, "untimed warm-up images per engine and round");
  p.Add("rounds", &o.rounds, "alternating rounds; the best round of each engine counts");
  p.Add("threads", &o.threads, "compute threads for both engines (0 = every core)");
  p.Add("weights", &o.weights, "CSRNet weights .h5 (default: ../shared/data/reference/csrnet_weights.h5 or random)");
  p.Add("work", &o.work, "folder for the exported model and results (default: a temporary folder, removed)");
  p.Add("keep", &o.keep, "keep the working folder");
  p.Add("child", &o.child, "internal: run one engine (libtorch|onnx) and write its figures to --out");
  p.Add("model", &o.model, "internal: the child's model file");
  p.Add("out", &o.out, "internal: the child's JSON result");
  if (!p.Parse(argc, argv)) return 0;
  if (o.images < 1 || o.rounds < 1)
    throw csr::UsageError("predict_engines_bench", "--images and --rounds must be >= 1");
  if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!o.child.empty()) return Child(o);

  const bench::fs::path work = bench::WorkFolder("predict_engines_bench", o.work);
  if (o.weights.empty()) {
    const bench::fs::path ref =
        bench::fs::path(CSR_SOURCE_DIR) / ".." / "shared" / "data" / "reference" / "csrnet_weights.h5";
    o.weights = bench::fs::exists(ref) ? ref.lexically_normal().string() : (work / "random_weights.h5").string();
    if (!bench::fs::exists(o.weights)) {  // the values do not change the cost
      torch::manual_seed(1);
      csr::CSRNet model(csr::Backend::kB);
      csr::InitWeights(model);
      csr::SaveWeightsH5(model, o.weights);
    }
  }
  const std::string onnx = (work / "model.onnx").string();
  const std::string export_cmd = "/usr/bin/python3 " CSR_SOURCE_DIR "/tools/export_onnx.py " + o.weights + " " + onnx +
                                 " >" + (work / "export.log").string() + " 2>&1";
  if (std::system(export_cmd.c_str()) != 0) {
    throw csr::Error(onnx, "tools/export_onnx.py failed (needs python3-torch, python3-h5py, python3-onnx): see " +
                               (work / "export.log").string());
  }
  const bench::CpuInfo cpu = bench::ReadCpuInfo();
  const double flops = CsrnetFlops(768, 1024);
  std::printf("predict_engines_bench: %d images 1024x768 per round, %d rounds, %d threads, weights %s\n", o.images,
              o.rounds, o.threads, o.weights.c_str());
  const double peak = bench::MeasurePeakGflops(cpu);
  std::printf("CPU: %s; measured fp32 FMA peak %.0f GFLOP/s (all cores); CSRNet at 1024x768: %.1f GFLOP per image\n",
              cpu.Describe().c_str(), peak, flops / 1e9);
  std::fflush(stdout);

  std::vector<Side> sides = {{"LibTorch fp32", o.weights}, {"ONNX fp32 (OpenCV DNN)", onnx}};
  const std::string self = (bench::SelfDir() / "predict_engines_bench").string();
  for (int r = 1; r <= o.rounds; ++r) {
    std::printf("round %d:", r);
    for (size_t k = 0; k < sides.size(); ++k) {
      Side& side = sides[k];
      const std::string out = (work / ("child" + std::to_string(k) + ".json")).string();
      const bench::ChildResult c = bench::RunChild(
          {self, "--child", k == 0 ? "libtorch" : "onnx", "--model", side.model, "--out", out, "--images",
           std::to_string(o.images), "--warmup", std::to_string(o.warmup), "--threads", std::to_string(o.threads)});
      if (c.status != 0) throw csr::Error(side.model, side.name + ": the child process failed");
      const nlohmann::json j = nlohmann::json::parse(csr::ReadTextFile(out));
      const double ips = j["images_per_s"];
      std::printf("  %s %.3f images/s", side.name.c_str(), ips);
      side.rss_mb = std::max(side.rss_mb, c.max_rss_mb);
      if (ips > side.best) {
        side.best = ips;
        side.load_s = j["load_s"];
        side.counts = j["counts"].get<std::vector<double>>();
        side.describe = j["describe"];
      }
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  std::printf("\nbest of %d rounds          images/s  eff. GFLOP/s  of FMA peak  peak RSS   load\n", o.rounds);
  for (const Side& s : sides) {
    const double gflops = s.best * flops / 1e9;
    std::printf("%-24s %9.3f %12.1f %10.1f%% %8.0f MB %6.2f s   %s\n", s.name.c_str(), s.best, gflops,
                peak > 0 ? 100.0 * gflops / peak : 0.0, s.rss_mb, s.load_s, s.describe.c_str());
  }
  const double ratio = sides[1].best / sides[0].best;
  std::printf("\nONNX / LibTorch images/s: %.2fx (%s)\n", ratio,
              ratio >= 1.0 ? "ONNX is as fast or faster" : "ONNX is slower");
  std::printf("ONNX / LibTorch peak RSS: %.2fx\n", sides[1].rss_mb / sides[0].rss_mb);
  double worst = 0;
  for (size_t i = 0; i < sides[0].counts.size() && i < sides[1].counts.size(); ++i) {
    worst = std::max(worst,
                     std::abs(sides[1].counts[i] - sides[0].counts[i]) / std::max(1e-9, std::abs(sides[0].counts[i])));
  }
  std::printf("counts ONNX vs LibTorch: largest relative difference %.2e\n", worst);
  bench::Finish(work, o.keep);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("predict_engines_bench", [&] { return Run(argc, argv); });
}
