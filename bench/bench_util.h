// Helpers shared by the benchmarks: a timed child process with its own peak
// memory, dd's write rate into a folder, and the benchmark's own folder.
#pragma once

#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

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

}  // namespace bench
