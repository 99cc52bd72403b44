#include "common/base/log.h"

#include <atomic>
#include <iostream>
#include <mutex>

#include "common/base/progress.h"

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
  Progress::ClearLineForLog();
  std::cerr << ProgramName() << ": " << tag << message << '\n';
  std::cerr.flush();
}

}  // namespace csr::log
