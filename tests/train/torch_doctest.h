// Include first in a train test: LibTorch's logging defines glog-style CHECK
// macros, which are dropped here before doctest defines its own.
#pragma once

#include <torch/torch.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>
