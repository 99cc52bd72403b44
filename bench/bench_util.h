// Helpers shared by the benchmarks: a timed child process with its own peak
// memory, dd's write rate into a folder, the benchmark's own folder, the CPU
// and its nominal fp32 peak, and crowd-like 1024 x 768 test pictures.
#pragma once

#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"

namespace bench {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

struct ChildResult {
  int status = -1;
  double seconds = 0;
  double max_rss_mb = 0;
};

// Runs argv as a child and reports its own peak memory (wait4's rusage).
inline ChildResult RunChild(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto start = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  ChildResult r;
  rusage usage{};
  int status = 0;
  wait4(pid, &status, 0, &usage);
  r.seconds = Seconds(start);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.max_rss_mb = usage.ru_maxrss / 1024.0;
  return r;
}

// What dd reports for `megabytes` MiB written with fdatasync into `dir`:
// {bytes, seconds}; {-1, -1} when its output cannot be read.
inline std::pair<double, double> DdWrite(const fs::path& dir, int64_t megabytes) {
  const fs::path tmp = dir / "dd.tmp";
  const std::string cmd =
      "dd if=/dev/zero of=" + tmp.string() + " bs=1M count=" + std::to_string(megabytes) + " conv=fdatasync 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  if (p) pclose(p);
  std::error_code ec;
  fs::remove(tmp, ec);
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"((\d+) bytes .* copied, ([0-9.]+) s)"))) return {-1, -1};
  return {std::stod(m[1]), std::stod(m[2])};
}

// dd's rate for 1 GiB written with fdatasync into `dir`, MB/s.
inline double DdMegabytesPerSecond(const fs::path& dir) {
  const auto [bytes, seconds] = DdWrite(dir, 1024);
  return bytes < 0 ? -1 : bytes / 1e6 / seconds;
}

inline fs::path SelfDir() { return fs::read_symlink("/proc/self/exe").parent_path(); }

// The benchmark's working folder: `given`, or a fresh one named after the
// benchmark under the temp folder; created.
inline fs::path WorkFolder(const std::string& bench, const std::string& given) {
  const fs::path work =
      given.empty() ? fs::temp_directory_path() / (bench + "-" + std::to_string(getpid())) : fs::path(given);
  fs::create_directories(work);
  return work;
}

// A tool built beside the benchmark; throws naming it when it is not built.
inline fs::path SiblingTool(const std::string& name) {
  const fs::path tool = SelfDir() / name;
  if (!fs::exists(tool)) throw csr::Error(tool.string(), "build the " + name + " target first");
  return tool;
}

// Removes the working folder, or says where it was kept.
inline void Finish(const fs::path& work, bool keep) {
  if (keep) {
    std::cout << "kept " << work.string() << "\n";
    return;
  }
  std::error_code ec;
  fs::remove_all(work, ec);
}

// The CPU as /proc/cpuinfo names it, with the cores this process may use
// and its widest vector units: "AMD EPYC 9654 (2 cores, AVX-512)".
struct CpuInfo {
  std::string name = "unknown CPU";
  int cores = 1;
  double mhz = 0;
  bool avx512 = false, avx2 = false, amx = false;
  std::string Describe() const {
    std::string units = amx ? "AVX-512, AMX" : avx512 ? "AVX-512" : avx2 ? "AVX2" : "SSE";
    return name + " (" + std::to_string(cores) + " cores, " + units + ")";
  }
};

// Independent fp32 FMA chains, enough to hide the latency of two FMA units.
__attribute__((target("avx512f"))) inline float FmaLoopAvx512(int64_t iters) {
  __m512 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm512_set1_ps(0.001f * k);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < 12; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < 12; ++k) sum = _mm512_add_ps(sum, acc[k]);
  float out[16];
  _mm512_storeu_ps(out, sum);
  return out[0] + out[15];
}
__attribute__((target("avx2,fma"))) inline float FmaLoopAvx2(int64_t iters) {
  __m256 acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm256_set1_ps(0.001f * k);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < 12; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  }
  float out[8];
  __m256 sum = acc[0];
  for (int k = 1; k < 12; ++k) sum = _mm256_add_ps(sum, acc[k]);
  _mm256_storeu_ps(out, sum);
  return out[0] + out[7];
}

// The machine's fp32 peak as measured, GFLOP/s: every core running
// independent FMA chains in its widest vector unit for about half a second
// (clock boost included, which the nominal clock leaves out). The fraction
// of this a kernel reaches is its fraction of the machine's peak.
inline double MeasurePeakGflops(const CpuInfo& cpu) {
  if (!cpu.avx2) return 0;
  const int lanes = cpu.avx512 ? 16 : 8;
  const int64_t iters = 20'000'000;
  std::vector<std::thread> threads;
  std::vector<float> sink(cpu.cores);
  const auto start = Clock::now();
  for (int t = 0; t < cpu.cores; ++t) {
    threads.emplace_back([&, t] { sink[t] = cpu.avx512 ? FmaLoopAvx512(iters) : FmaLoopAvx2(iters); });
  }
  for (std::thread& th : threads) th.join();
  const double seconds = Seconds(start);
  volatile float keep = sink[0];  // the loops' results are used
  (void)keep;
  return 2.0 * 12 * lanes * static_cast<double>(iters) * cpu.cores / seconds / 1e9;
}
inline CpuInfo ReadCpuInfo() {
  CpuInfo c;
  c.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : std::string();
    if (key == "model name" && c.name == "unknown CPU") c.name = value;
    if (key == "cpu MHz" && c.mhz == 0) c.mhz = std::atof(value.c_str());
    if (key == "flags") {
      c.avx512 = value.find(" avx512f") != std::string::npos;
      c.avx2 = value.find(" avx2") != std::string::npos;
      c.amx = value.find(" amx_tile") != std::string::npos;
    }
  }
  return c;
}

// Crowd-like 1024 x 768 RGB pictures (the size of ShanghaiTech Part B):
// textured background with many small heads, deterministic from `seed`.
inline cv::Mat BenchImage(int seed) {
  cv::RNG rng(static_cast<uint64_t>(seed) * 7919 + 1);
  cv::Mat img(768, 1024, CV_8UC3);
  rng.fill(img, cv::RNG::UNIFORM, cv::Scalar(20, 20, 20), cv::Scalar(120, 120, 120));
  cv::GaussianBlur(img, img, {5, 5}, 1.5);
  for (int k = 0; k < 600; ++k) {
    const cv::Point c(rng.uniform(0, 1024), rng.uniform(200, 768));
    cv::circle(img, c, rng.uniform(3, 9), cv::Scalar(rng.uniform(60, 230), rng.uniform(50, 200), rng.uniform(40, 180)),
               cv::FILLED, cv::LINE_AA);
  }
  return img;
}

}  // namespace bench
