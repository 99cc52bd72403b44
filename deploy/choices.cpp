#include "deploy/choices.h"

#include <cctype>
#include <map>
#include <mutex>

#include "common/base/error.h"

namespace csr {

Backend ParseBackend(const std::string& text, const std::string& where) {
  if (text == "A") return Backend::kA;
  if (text == "B") return Backend::kB;
  if (text == "C") return Backend::kC;
  if (text == "D") return Backend::kD;
  throw UsageError(where, StrCat("unknown CSRNet back end '", text, "' (expected A, B, C or D)"));
}

std::string BackendName(Backend backend) {
  switch (backend) {
    case Backend::kA:
      return "A";
    case Backend::kB:
      return "B";
    case Backend::kC:
      return "C";
    case Backend::kD:
      return "D";
  }
  return "B";
}

std::string EngineName(Engine engine) {
  switch (engine) {
    case Engine::kAuto:
      return "auto";
    case Engine::kLibTorch:
      return "libtorch";
    case Engine::kOnnx:
      return "onnx";
  }
  return "?";
}

Precision ParsePrecision(const std::string& text, const std::string& where) {
  if (text == "auto") return Precision::kAuto;
  if (text == "fp32") return Precision::kFp32;
  if (text == "bf16") return Precision::kBf16;
  if (text == "fp16") return Precision::kFp16;
  throw UsageError(where, StrCat("unknown precision '", text, "' (expected auto, fp32, bf16 or fp16)"));
}

std::string PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
    case Precision::kAuto:
      return "auto";
  }
  return "?";
}

namespace {

std::mutex g_resolved_mutex;
std::map<std::string, ResolvedPrecision>& ResolvedTable() {
  static std::map<std::string, ResolvedPrecision> table;
  return table;
}

}  // namespace

void RecordPrecision(const std::string& model_file, const ResolvedPrecision& resolved) {
  std::lock_guard<std::mutex> lock(g_resolved_mutex);
  ResolvedTable()[model_file] = resolved;
}

ResolvedPrecision RecordedPrecision(const std::string& model_file, Precision asked) {
  std::lock_guard<std::mutex> lock(g_resolved_mutex);
  const auto it = ResolvedTable().find(model_file);
  if (it != ResolvedTable().end()) return it->second;
  return {asked == Precision::kAuto ? Precision::kFp32 : asked, false};
}

DeviceChoice ParseDeviceChoice(const std::string& text, const std::string& where) {
  DeviceChoice d;
  if (text == "auto") return d;
  if (text == "cpu") {
    d.kind = DeviceChoice::Kind::kCpu;
    return d;
  }
  const std::string bad = StrCat("bad device '", text, "' (expected auto, cpu, cuda or cuda:N)");
  if (text.rfind("cuda", 0) != 0) throw UsageError(where, bad);
  d.kind = DeviceChoice::Kind::kCuda;
  if (text.size() == 4) return d;
  const std::string digits = text.substr(5);
  if (text[4] != ':' || digits.empty() || digits.size() > 3) throw UsageError(where, bad);
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) throw UsageError(where, bad);
  }
  d.index = std::stoi(digits);
  if (d.index > 127) throw UsageError(where, StrCat("device index ", d.index, " out of range (0..127)"));
  return d;
}

std::string DeviceChoiceName(const DeviceChoice& d) {
  switch (d.kind) {
    case DeviceChoice::Kind::kAuto:
      return "auto";
    case DeviceChoice::Kind::kCpu:
      return "cpu";
    case DeviceChoice::Kind::kCuda:
      return d.index < 0 ? std::string("cuda") : StrCat("cuda:", d.index);
  }
  return "?";
}

void AddBackendOption(ArgParser& p, const std::string& name, Backend* value, const std::string& help) {
  p.AddEnum<Backend>(name, value, {{"A", Backend::kA}, {"B", Backend::kB}, {"C", Backend::kC}, {"D", Backend::kD}},
                     help);
}

void AddEngineOption(ArgParser& p, const std::string& name, Engine* value) {
  p.AddEnum<Engine>(name, value, {{"auto", Engine::kAuto}, {"libtorch", Engine::kLibTorch}, {"onnx", Engine::kOnnx}},
                    "libtorch (.pt/.h5 weights), onnx (an .onnx file through OpenCV's DNN module, no LibTorch "
                    "needed), or auto: by the weights file's content");
}

void AddPrecisionOption(ArgParser& p, const std::string& name, Precision* value) {
  p.AddTyped<Precision>(
      name, value, [](const std::string& text, const std::string& where) { return ParsePrecision(text, where); },
      PrecisionName, "auto|fp32|bf16|fp16",
      "fp32 (the original's numbers), or autocast with channels-last tensors: bf16 (CPU, CUDA) or fp16 (CUDA; "
      "training scales the loss). auto: on CUDA bf16 where the GPU has it (compute capability 8+), else fp32; on "
      "the CPU whichever of fp32 and bf16 a short timing of this model (about a second) finds faster. An explicit "
      "bf16 on the CPU is timed too and warns when slower than fp32 (docs/training.md)");
}

void AddDeviceOption(ArgParser& p, const std::string& name, DeviceChoice* value) {
  p.AddTyped<DeviceChoice>(
      name, value, [](const std::string& text, const std::string& where) { return ParseDeviceChoice(text, where); },
      DeviceChoiceName, "auto|cpu|cuda|cuda:N", "auto, cpu, cuda or cuda:N (auto = CUDA when available)");
}

}  // namespace csr
