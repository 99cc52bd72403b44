#include "common/error.h"

#include <utility>

namespace csr {

namespace {
std::string Compose(const std::string& where, const std::string& reason) {
  return where.empty() ? reason : where + ": " + reason;
}
}  // namespace

Error::Error(std::string where, std::string reason)
    : std::runtime_error(Compose(where, reason)),
      where_(std::move(where)),
      reason_(std::move(reason)) {}

}  // namespace csr
