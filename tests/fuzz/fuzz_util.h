// Shared by the fuzz targets: each takes the fuzzer's bytes as the content of
// one file and runs a reader of the project over it. Every outcome but a
// csr::Error (the reader refusing the file with its one line) or success is a
// finding: a crash, a sanitizer report, or another exception escaping.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/base/error.h"
#include "common/base/log.h"

namespace csr::fuzz {

namespace fs = std::filesystem;

// A private scratch folder for this process, removed at exit.
inline const fs::path& Scratch() {
  static const fs::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    fs::path d = fs::path(base && *base ? base : "/tmp") / ("csr-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(Scratch(), ec);
    });
    log::SetLevel(log::Level::kQuiet);
    return d;
  }();
  return dir;
}

inline void WriteBytes(const fs::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();  // the harness itself failed, not the reader
}

// Runs `read`, accepting success and csr::Error; anything else escapes to
// the fuzzer, which reports it as an uncaught exception.
template <typename Fn>
void Expect(Fn&& read) {
  try {
    read();
  } catch (const csr::Error&) {
  }
}

}  // namespace csr::fuzz
