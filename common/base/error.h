// Two tiers of errors. Everything a user can cause (a bad file, option or
// config) throws csr::Error naming the file or option, which each tool prints
// as one line and exits non-zero. A broken internal invariant is a bug, not a
// bad input: CSR_ASSERT stays on in Release builds, prints file:line and
// aborts, so a programming error is never reported as "1 image failed".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace csr {

class Error : public std::runtime_error {
 public:
  // `where` is a file path or an option name; may be empty.
  Error(std::string where, std::string reason);

  const std::string& where() const { return where_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string where_;
  std::string reason_;
};

// Bad command-line usage (unknown flag, bad value); tools exit with code 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Concatenates its arguments with operator<<, for building messages.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// The first line of a message: the tools print one line per error, and
// LibTorch's c10::Error appends a C++ backtrace to what() on later lines.
inline std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace csr

namespace csr::internal {
// Prints "<program>: internal error at file:line: `cond` <message>" and aborts.
[[noreturn]] void AssertFailed(const char* file, int line, const char* cond, const std::string& message);
}  // namespace csr::internal

// An internal invariant, on in every build type, with a message (at least one
// argument, joined by StrCat). Never use it for anything a user's input can
// break: that is CSR_CHECK / csr::Error.
#define CSR_ASSERT(cond, ...)                                                                          \
  do {                                                                                                 \
    if (!(cond)) ::csr::internal::AssertFailed(__FILE__, __LINE__, #cond, ::csr::StrCat(__VA_ARGS__)); \
  } while (0)

// Throws csr::Error(where, message) unless `cond` holds.
#define CSR_CHECK(cond, where, ...)                                       \
  do {                                                                    \
    if (!(cond)) throw ::csr::Error((where), ::csr::StrCat(__VA_ARGS__)); \
  } while (0)
