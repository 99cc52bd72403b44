// --help of every preprocessing tool shows every option with its real default.
#include "tests/help_check.h"

TEST_CASE("gt_gen, crop_shards and make_synthetic: --help shows every option with its default") {
  for (const char* tool : {"gt_gen", "crop_shards", "make_synthetic"}) csr::test::CheckHelpDefaults(tool);
}
