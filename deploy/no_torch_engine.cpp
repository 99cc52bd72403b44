// The LibTorch engine's stand-in in a build without LibTorch
// (-DCSR_BUILD_TRAIN=OFF): predict then runs ONNX models only.
#include "common/base/error.h"
#include "deploy/engine.h"
#include "deploy/predictor.h"

namespace csr {

std::unique_ptr<DensityEngine> MakeTorchEngine(const ModelSettings& settings) {
  throw UsageError("--engine", StrCat("this build has no LibTorch (built with -DCSR_BUILD_TRAIN=OFF), so it cannot "
                                      "run ",
                                      settings.weights,
                                      ": export it with tools/export_onnx.py and give the "
                                      ".onnx file with --engine onnx"));
}

bool HaveTorchEngine() { return false; }

}  // namespace csr
