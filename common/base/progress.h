// A progress indicator for batch tools. On a terminal it redraws one line
// (count, percentage, rate, time left); when stderr is not a terminal (logs,
// CI) it prints a plain line at every 10 % so logs stay readable. It writes
// through the logger (log::DrawLiveLine), which erases the bar before any
// message.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace csr {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Thread-safe; advance by n items.
  void Tick(int64_t n = 1);
  // Draws the final state and ends the line. Idempotent.
  void Finish();

 private:
  void Draw(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  int last_decile_ = -1;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::mutex mutex_;
};

}  // namespace csr
