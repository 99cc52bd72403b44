#include "common/base/progress.h"

#include <unistd.h>

#include <cstdio>

#include "common/base/log.h"

namespace csr {
namespace {
std::string FormatSeconds(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  }
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(total),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { Finish(); }

void Progress::Tick(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_) {
      last_draw_ = now;
      Draw(false);
    }
  } else if (total_ > 0) {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_ && decile < 10) {
      last_decile_ = decile;
      Draw(false);
    }
  }
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  Draw(true);
}

void Progress::Draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  const double pct = total_ > 0 ? 100.0 * done_ / total_ : 100.0;
  char buf[256];
  if (final_line) {
    std::snprintf(buf, sizeof(buf), "%s: %lld/%lld done in %s (%.1f/s)", label_.c_str(), static_cast<long long>(done_),
                  static_cast<long long>(total_), FormatSeconds(elapsed).c_str(), rate);
  } else {
    const double left = rate > 0 ? (total_ - done_) / rate : 0.0;
    std::snprintf(buf, sizeof(buf), "%s: %lld/%lld (%3.0f%%) %.1f/s, %s left", label_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), pct, rate,
                  FormatSeconds(left).c_str());
  }
  if (!tty_) {
    log::WriteLine(buf);
  } else if (final_line) {
    log::EndLiveLine(buf);
  } else {
    log::DrawLiveLine(buf);
  }
}

}  // namespace csr
