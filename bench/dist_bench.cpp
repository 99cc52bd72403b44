// Data-parallel training on this machine, and a model on paper for many.
// 1. The trainer on synthetic 256 x 192 crops: 1 rank x 2 threads against
//    2 ranks x 1 thread (env:// rendezvous on 127.0.0.1), steps/s and
//    patches/s from train_log.jsonl.
// 2. The all-reduce of CSRNet's gradients alone (16.3 M fp32 parameters,
//    65 MB) between 2 local ranks over Gloo: seconds per all-reduce and its
//    share of a 2-rank step.
// 3. Step time for N machines = compute + ring all-reduce of 65 MB
//    (2 (N-1)/N x 65 MB over the link), with the compute time measured in 1,
//    at 10 and 100 Gbit/s, for N = 2..64; and the same with a stated GPU
//    compute time per step (NCCL), which was not measured here.
//
// Usage: dist_bench [--steps 12] [--work DIR] [--keep] [--gpu-step 0.05]
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/base/cli.h"
#include "common/base/fs.h"
#include "tests/fixtures/synthetic_shards.h"
#include "train/distributed.h"
#include "train/model.h"

namespace {

namespace fs = std::filesystem;
using bench::Clock;
using bench::Seconds;

struct Options {
  int steps = 12;
  std::string work;
  bool keep = false;
  double gpu_step = 0.05;   // stated, not measured: seconds of compute per step on a GPU
  int allreduce_rank = -1;  // internal: run as rank R of the all-reduce measurement
  int port = 0;
  int repeats = 10;
};

// The free port the kernel would give an ephemeral bind.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Patches/s and steps/s of the run in `run` (train_log.jsonl's last entry).
std::pair<double, double> Rates(const fs::path& run, int patches_per_step) {
  std::istringstream in(csr::ReadTextFile(run / "train_log.jsonl"));
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  const auto j = nlohmann::json::parse(last);
  const double patches = j["patches_per_s"].get<double>();
  return {patches, patches / patches_per_step};
}

// Rank R of 2: all-reduces the gradients' 65 MB `repeats` times; rank 0
// prints the mean seconds per all-reduce.
int AllReduceChild(const Options& o) {
  csr::DistEnv env;
  env.rank = o.allreduce_rank;
  env.world = 2;
  env.master_addr = "127.0.0.1";
  env.master_port = o.port;
  env.launcher = "dist_bench";
  csr::Distributed dist(env, csr::DistBackend::kGloo, c10::Device(c10::kCPU), std::chrono::seconds(60));
  csr::CSRNet model(csr::Backend::kB);
  std::vector<torch::Tensor> grads;
  int64_t bytes = 0;
  for (const auto& p : model->parameters()) bytes += p.numel() * 4;
  // The trainer's buckets: 16 MB of flattened gradients each.
  for (int64_t left = bytes; left > 0; left -= 16 << 20) {
    grads.push_back(torch::ones({std::min<int64_t>(left, 16 << 20) / 4}));
  }
  dist.AllReduceSum(grads);  // warm-up: connections, buffers
  const auto t = Clock::now();
  for (int i = 0; i < o.repeats; ++i) dist.AllReduceSum(grads);
  if (env.rank == 0) std::cout << Seconds(t) / o.repeats << " " << bytes << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("dist_bench", [&] {
    Options o;
    csr::ArgParser p("dist_bench", "[options]",
                     "Times data-parallel training (1 rank x 2 threads vs 2 ranks x 1 thread) and the gradient "
                     "all-reduce, then models N machines.");
    p.Add("steps", &o.steps, "training steps per run");
    p.Add("work", &o.work, "working folder (default: fresh, under the temp folder, removed afterwards)");
    p.Add("keep", &o.keep, "keep the working folder");
    p.Add("gpu-step", &o.gpu_step, "stated GPU compute seconds per step for the NCCL model (not measured here)");
    p.Add("allreduce-rank", &o.allreduce_rank, "internal: run as rank R of the all-reduce measurement");
    p.Add("port", &o.port, "internal: the all-reduce measurement's rendezvous port");
    p.Add("repeats", &o.repeats, "all-reduces timed");
    if (!p.Parse(argc, argv)) return 0;
    if (o.allreduce_rank >= 0) return AllReduceChild(o);

    const fs::path work = bench::WorkFolder("dist_bench", o.work);
    const fs::path tool = bench::SiblingTool("trainer");
    csr::SyntheticShardSpec spec;
    spec.train = 32;
    spec.test = 1;
    spec.train_w = 256;
    spec.train_h = 192;
    csr::WriteSyntheticShards(work / "shards", spec);
    const std::string common = csr::StrCat((work / "shards").string(), " --lr 1e-7 --workers 1 --eval-every 0 ",
                                           "--checkpoint-minutes 0 --max-steps ", o.steps);
    std::cout << "CSRNet on 256x192 crops, " << o.steps << " steps per run (the first steps warm up: figures are "
              << "the whole run's)\n";

    // 1 rank x 2 threads.
    const auto one = bench::RunChild(
        {"/bin/sh", "-c",
         tool.string() + " " + common + " --threads 2 --out " + (work / "one").string() + " 2>/dev/null"});
    if (one.status != 0) throw csr::Error(tool.string(), "the 1-rank run failed");
    const auto [one_patches, one_steps] = Rates(work / "one", 1);

    // 2 ranks x 1 thread.
    const int port = FreePort();
    std::string two_cmd;
    for (int r = 0; r < 2; ++r) {
      two_cmd += csr::StrCat("RANK=", r, " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=", port, " ", tool.string(),
                             " ", common, " --threads 1 --out ", (work / "two").string(), " 2>/dev/null &\n");
    }
    two_cmd += "wait\n";
    const auto two = bench::RunChild({"/bin/sh", "-c", two_cmd});
    if (two.status != 0) throw csr::Error(tool.string(), "the 2-rank run failed");
    const auto [two_patches, two_steps] = Rates(work / "two", 2);

    // The all-reduce alone, between 2 local ranks.
    const int ar_port = FreePort();
    const fs::path self = bench::SelfDir() / "dist_bench";
    const std::string ar_cmd = csr::StrCat(self.string(), " --allreduce-rank 1 --port ", ar_port, " --repeats ",
                                           o.repeats, " & ", self.string(), " --allreduce-rank 0 --port ", ar_port,
                                           " --repeats ", o.repeats, " > ", (work / "ar.txt").string(), "; wait");
    if (bench::RunChild({"/bin/sh", "-c", ar_cmd}).status != 0) throw csr::Error(self.string(), "all-reduce failed");
    std::istringstream ar(csr::ReadTextFile(work / "ar.txt"));
    double ar_s = 0, bytes = 0;
    ar >> ar_s >> bytes;

    std::cout << std::fixed << std::setprecision(2);
    std::cout << "  1 rank  x 2 threads: " << one_steps << " steps/s, " << one_patches << " patches/s (batch 1)\n";
    std::cout << "  2 ranks x 1 thread : " << two_steps << " steps/s, " << two_patches
              << " patches/s (global batch 2)   ratio " << two_patches / one_patches << " in patches/s\n";
    const double step2 = 1.0 / two_steps;
    std::cout << std::setprecision(3) << "  all-reduce of " << bytes / 1e6 << " MB (Gloo, 2 local ranks): " << ar_s
              << " s, " << 100.0 * ar_s / step2 << "% of the 2-rank step (" << step2 << " s)\n";

    // On paper: N machines, each computing one patch per step as the single
    // rank here does, joined by a ring all-reduce.
    const double compute = 1.0 / one_steps;
    std::cout << "model: step = compute + ring all-reduce of " << bytes / 1e6
              << " MB (2(N-1)/N x the bytes over each link); compute " << compute << " s per patch as measured on 1 "
              << "rank x 2 threads here, and " << o.gpu_step << " s on a GPU (stated, not measured)\n";
    std::cout << "     N   link     CPU step s  CPU patches/s  efficiency   GPU step s  GPU patches/s  efficiency\n";
    for (int gbit : {10, 100}) {
      for (int n : {2, 4, 8, 16, 32, 64}) {
        const double comm = 2.0 * (n - 1) / n * bytes * 8 / (gbit * 1e9);
        const double cpu = compute + comm, gpu = o.gpu_step + comm;
        std::cout << std::setw(6) << n << std::setw(5) << gbit << "G" << std::setw(13) << cpu << std::setw(15)
                  << n / cpu << std::setw(12) << compute / cpu << std::setw(13) << gpu << std::setw(15) << n / gpu
                  << std::setw(12) << o.gpu_step / gpu << "\n";
      }
    }
    bench::Finish(work, o.keep);
    return 0;
  });
}
