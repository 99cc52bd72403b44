// The doctest main of every test executable: doctest's own, plus exit code 77
// ("skipped" to ctest, see test_skip.h) when a test case skipped and none failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <sstream>
#include <string>

#include "tests/test_skip.h"

namespace csr::test {
namespace {

std::atomic<int> g_skips{0};

bool Required(const std::string& need) {
  const char* env = std::getenv("CSR_REQUIRE");
  if (env == nullptr) return false;
  std::stringstream list(env);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item == need || item == "all") return true;
  }
  return false;
}

}  // namespace

bool Skip(const char* need, const std::string& reason) {
  if (Required(need)) {
    FAIL_CHECK("required by CSR_REQUIRE but unavailable (", std::string(need), "): ", reason);
    return true;
  }
  ++g_skips;
  MESSAGE("SKIPPED (", std::string(need), "): ", reason);
  return true;
}

bool AnySkipped() { return g_skips.load() > 0; }

}  // namespace csr::test

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  if (rc == 0 && csr::test::AnySkipped()) return 77;
  return rc;
}
