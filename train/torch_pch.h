// The precompiled header of every translation unit that uses LibTorch (the
// csr_train library, its tools, tests and benchmarks; CSR_PCH in
// CMakeLists.txt). LibTorch's headers are most of such a unit's compile time
// (about 15 s of a 20 s unit on 2 cores): parsed once per build here instead
// of once per file. Only what those units include anyway belongs here; the
// c10d headers stay with train/distributed.cpp, the one file that uses them.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/data/dataloader.h>
#include <torch/data/example.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>
