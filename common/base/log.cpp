#include "common/base/log.h"

#include <atomic>
#include <cstdio>
#include <iostream>
#include <mutex>

namespace csr::log {
namespace {
std::mutex& Mutex() {
  static std::mutex m;
  return m;
}
std::string& ProgramName() {
  static std::string name = "csrnet";
  return name;
}
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
bool g_live = false;  // a live line is on the terminal (under Mutex())

// Erases the live line, if one is drawn. Under Mutex().
void ClearLiveLine() {
  if (!g_live) return;
  g_live = false;
  std::fputs("\r\033[K", stderr);
}
}  // namespace

void SetProgram(const std::string& name) { ProgramName() = name; }
const std::string& Program() { return ProgramName(); }
void SetLevel(Level level) { g_level = static_cast<int>(level); }
Level GetLevel() { return static_cast<Level>(g_level.load()); }

void Write(Level level, const std::string& message) {
  const char* tag = "";
  switch (level) {
    case Level::kDebug:
      tag = "debug: ";
      break;
    case Level::kWarning:
      tag = "warning: ";
      break;
    case Level::kError:
      tag = "error: ";
      break;
    default:
      break;
  }
  std::lock_guard<std::mutex> lock(Mutex());
  ClearLiveLine();
  std::cerr << ProgramName() << ": " << tag << message << '\n';
  std::cerr.flush();
}

void DrawLiveLine(const std::string& text) {
  std::lock_guard<std::mutex> lock(Mutex());
  std::fprintf(stderr, "\r\033[K%s", text.c_str());
  std::fflush(stderr);
  g_live = true;
}

void EndLiveLine(const std::string& text) {
  std::lock_guard<std::mutex> lock(Mutex());
  std::fprintf(stderr, "\r\033[K%s\n", text.c_str());
  std::fflush(stderr);
  g_live = false;
}

void WriteLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(Mutex());
  ClearLiveLine();
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace csr::log
