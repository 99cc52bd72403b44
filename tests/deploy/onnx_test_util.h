// Fixtures for the ONNX engine's tests: exporting with tools/export_onnx.py
// (Debian's python3-torch, python3-h5py and python3-onnx) and small ONNX
// models of other networks.
#pragma once

#include <fstream>
#include <string>

#include "tests/test_util.h"

namespace csr::test {

// True when Debian's Python can export (torch, h5py, onnx).
inline bool HaveOnnxExport() { return Run(test::Python() + " -c 'import torch, h5py, onnx' >/dev/null 2>&1") == 0; }

// Exports `weights` to `onnx` with tools/export_onnx.py; returns its exit
// status (its output goes to `log`).
inline int ExportOnnx(const fs::path& weights, const fs::path& onnx, const fs::path& log) {
  return Run(test::Python() + " " CSR_SOURCE_DIR "/tools/export_onnx.py " + weights.string() + " " + onnx.string(),
             log);
}

// Runs a Python snippet (written to `dir`/name.py) with the tools folder on
// the path; returns its exit status.
inline int RunPython(const fs::path& dir, const std::string& name, const std::string& code) {
  const fs::path script = dir / (name + ".py");
  {
    std::ofstream f(script);
    f << "import sys\nsys.path.insert(0, '" CSR_SOURCE_DIR "/tools')\n" << code;
  }
  return Run(test::Python() + " " + script.string(), dir / (name + ".log"));
}

}  // namespace csr::test
