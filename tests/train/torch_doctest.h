// Include first in a train test: LibTorch's logging defines glog-style CHECK
// macros, which are dropped here before doctest defines its own. The LibTorch
// headers are the precompiled header's (train/torch_pch.h), not
// <torch/torch.h>: that one adds about 7 s to every test's compile on 2 cores
// (the PCH holds only what the project uses); a test that needs more includes
// it itself.
#pragma once

#include "train/torch_pch.h"

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LT
#undef CHECK_LE
#undef CHECK_GT
#undef CHECK_GE
#include <doctest/doctest.h>
