// The typed choices of the model tools' options: CSRNet's back-end variant,
// the inference engine, the precision and the device. Parsed once, at the
// command line or from a JSON config (ArgParser::AddEnum / AddTyped), and
// typed from there on. No LibTorch here: the predictor builds without it.
#pragma once

#include <string>

#include "common/base/cli.h"

namespace csr {

// The paper's back ends: dilation 1 (A), 2 (B), 2,2,2,4,4,4 (C), 4 (D).
enum class Backend { kA, kB, kC, kD };
// "A".."D" -> Backend; throws csr::UsageError naming `where` otherwise.
Backend ParseBackend(const std::string& text, const std::string& where = "--backend");
std::string BackendName(Backend backend);

// What runs the network: LibTorch (this project's .pt and .h5 weights) or
// OpenCV's DNN module (an .onnx file, tools/export_onnx.py). kAuto picks by
// the weights file's content (ResolveEngine, deploy/predictor.h).
enum class Engine { kAuto, kLibTorch, kOnnx };
std::string EngineName(Engine engine);

// fp32, or autocast with channels-last tensors in bf16 (CPU and CUDA) or in
// fp16 (CUDA only; training scales the loss, train/grad_scaler.h). kAuto is
// what the command line may ask for, never what runs: the tools resolve it to
// one of the three first (ResolvePrecision, train/precision_probe.h; the
// ONNX engine: fp32).
enum class Precision { kFp32, kBf16, kFp16, kAuto };
// "auto" | "fp32" | "bf16" | "fp16"; throws csr::UsageError naming `where`
// otherwise, listing the four.
Precision ParsePrecision(const std::string& text, const std::string& where = "--precision");
std::string PrecisionName(Precision precision);

// What --precision became for a model file when its engine was built
// (deploy/engine.h): the engines record it, so a tool reports the precision
// it ran in rather than "auto" (evaluate's JSON). Thread-safe, for the whole
// process; the last engine built for a file wins.
struct ResolvedPrecision {
  Precision precision = Precision::kFp32;  // never kAuto
  bool by_auto = false;                    // chosen by --precision auto
};
void RecordPrecision(const std::string& model_file, const ResolvedPrecision& resolved);
// The record for `model_file`; without one, `asked` as given (kAuto: fp32).
ResolvedPrecision RecordedPrecision(const std::string& model_file, Precision asked);

// Where the network runs, as asked for: "auto" (CUDA when available, else
// the CPU), "cpu", "cuda" (the current GPU) or "cuda:N". Resolved against
// the machine by ResolveDevice (train/inference.h) for LibTorch; the ONNX
// engine runs on the CPU.
struct DeviceChoice {
  enum class Kind { kAuto, kCpu, kCuda };
  Kind kind = Kind::kAuto;
  int index = -1;  // kCuda: the GPU index, -1 = the current one
  bool operator==(const DeviceChoice& other) const { return kind == other.kind && index == other.index; }
};
// Throws csr::UsageError naming `where` for any other spelling, and for an
// index outside 0..127 (LibTorch's device index is 8 bits).
DeviceChoice ParseDeviceChoice(const std::string& text, const std::string& where = "--device");
std::string DeviceChoiceName(const DeviceChoice& device);

// The options as every tool registers them: `name` with its typed value.
void AddBackendOption(ArgParser& parser, const std::string& name, Backend* value, const std::string& help);
void AddEngineOption(ArgParser& parser, const std::string& name, Engine* value);
void AddPrecisionOption(ArgParser& parser, const std::string& name, Precision* value);
void AddDeviceOption(ArgParser& parser, const std::string& name, DeviceChoice* value);

}  // namespace csr
