// The one error type for a user's bad input: a file (or option) and what is
// wrong with it. Internal invariants use assert; everything a user can cause
// throws csr::Error, which each tool's main prints as one line.
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

}  // namespace csr

// Throws csr::Error(where, message) unless `cond` holds.
#define CSR_CHECK(cond, where, ...)                                \
  do {                                                             \
    if (!(cond)) throw ::csr::Error((where), ::csr::StrCat(__VA_ARGS__)); \
  } while (0)
