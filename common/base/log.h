// Thread-safe logging to stderr: "<tool>: warning: message". Standard output
// is left to a tool's results (counts, tables) so it can be piped.
#pragma once

#include <string>

#include "common/base/error.h"

namespace csr::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kQuiet = 4 };

// The tool name printed before every message; set once in main.
void SetProgram(const std::string& name);
const std::string& Program();
void SetLevel(Level level);
Level GetLevel();

void Write(Level level, const std::string& message);

// The one live line on a terminal (a progress bar, common/base/progress.h).
// DrawLiveLine replaces it in place ("\r", erase, text; no newline). A
// message written meanwhile erases it first, so none lands in the middle of
// it; the next draw brings it back. EndLiveLine draws its last text and ends
// the line. WriteLine writes a line as it is (no program name): progress off
// a terminal. All of them hold the logger's lock, so a bar and other
// threads' messages never interleave.
void DrawLiveLine(const std::string& text);
void EndLiveLine(const std::string& text);
void WriteLine(const std::string& line);

template <typename... Args>
void Debug(const Args&... args) {
  if (GetLevel() <= Level::kDebug) Write(Level::kDebug, StrCat(args...));
}
template <typename... Args>
void Info(const Args&... args) {
  if (GetLevel() <= Level::kInfo) Write(Level::kInfo, StrCat(args...));
}
template <typename... Args>
void Warn(const Args&... args) {
  if (GetLevel() <= Level::kWarning) Write(Level::kWarning, StrCat(args...));
}
template <typename... Args>
void Error(const Args&... args) {
  Write(Level::kError, StrCat(args...));
}

}  // namespace csr::log
