// ExpectError: the call must throw csr::Error whose message contains every
// fragment (a file name, a field, a reason).
#pragma once

#include <functional>
#include <initializer_list>
#include <string>

#include <doctest/doctest.h>

#include "common/base/error.h"

namespace csr::test {

template <typename Fn>
void ExpectError(Fn&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    FAIL("no csr::Error thrown");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    for (const auto& f : fragments) CHECK(message.find(f) != std::string::npos);
  }
}

template <typename Fn>
void ExpectError(Fn&& fn, const std::string& fragment) {
  ExpectError(std::forward<Fn>(fn), {fragment});
}

template <typename Fn>
void ExpectError(Fn&& fn, const char* fragment) {
  ExpectError(std::forward<Fn>(fn), {std::string(fragment)});
}

// The message of the csr::Error that `fn` throws, or "" when it throws none.
inline std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace csr::test
