// --help of every LibTorch tool shows every option with its real default.
#include "tests/help_check.h"

TEST_CASE("trainer, evaluate and predict: --help shows every option with its default") {
  for (const char* tool : {"trainer", "evaluate", "predict"}) csr::test::CheckHelpDefaults(tool);
}
