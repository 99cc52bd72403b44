#include "common/base/error.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "common/base/log.h"

namespace csr {

namespace {
std::string Compose(const std::string& where, const std::string& reason) {
  return where.empty() ? reason : where + ": " + reason;
}
}  // namespace

Error::Error(std::string where, std::string reason)
    : std::runtime_error(Compose(where, reason)), where_(std::move(where)), reason_(std::move(reason)) {}

namespace internal {

void AssertFailed(const char* file, int line, const char* cond, const std::string& message) {
  std::fprintf(stderr, "%s: internal error at %s:%d: `%s` does not hold%s%s (a bug: please report it)\n",
               log::Program().c_str(), file, line, cond, message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace internal
}  // namespace csr
