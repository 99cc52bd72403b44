// CSRNet (Li, Zhang, Chen, CVPR 2018) as a LibTorch module, with weight I/O
// in the original PyTorch model's layout so weights move both ways.
//
// Parameter names equal the original's state-dict keys: the front end and
// back end are Sequentials whose indices count the ReLU and max-pool slots,
// so the convolutions are frontend.{0,2,5,7,10,12,14,17,19,21} and
// backend.{0,2,4,6,8,10}, then output_layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "train/choices.h"

namespace csr {

// The back-end variant (Backend, ParseBackend, BackendName): train/choices.h.
// The six back-end dilation rates: A 1,1,1,1,1,1; B 2,...; C 2,2,2,4,4,4; D 4,...
std::vector<int> BackendDilations(Backend backend);

struct CSRNetImpl : torch::nn::Module {
  // batch_norm: a BatchNorm2d after every front- and back-end convolution
  // (before its ReLU), as the original code's make_layers(batch_norm=True);
  // the names then count those slots too (frontend.0 conv, frontend.1 bn,
  // frontend.3 conv, ...). A training-time variant: FoldBatchNorm turns it
  // into the plain network that every model file holds.
  explicit CSRNetImpl(Backend backend = Backend::kB, bool batch_norm = false);

  // x: N x 3 x H x W, ImageNet-normalised RGB. Returns N x 1 x floor(H/8) x floor(W/8).
  torch::Tensor forward(torch::Tensor x);

  Backend backend_variant() const { return variant_; }
  bool batch_norm() const { return batch_norm_; }

  torch::nn::Sequential frontend{nullptr};
  torch::nn::Sequential backend{nullptr};
  torch::nn::Conv2d output_layer{nullptr};

 private:
  Backend variant_;
  bool batch_norm_ = false;
};
TORCH_MODULE(CSRNet);

// The plain CSRNet (on the CPU, fp32, contiguous) that computes what `model`
// computes in eval mode: each batch normalisation's running statistics and
// affine factors folded into the convolution before it (in double), so that
// W' = W * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta.
// A model without batch normalisation comes back as a copy.
CSRNet FoldBatchNorm(CSRNet& model);

// Number of trainable scalars (16,263,489 for every back end).
int64_t ParameterCount(const torch::nn::Module& model);

// Input pixels each side of an output cell's 8x8 block that can influence it,
// rounded up to a multiple of 8 (144 for back end B). Tiles whose margins are
// at least this wide reproduce whole-image inference exactly.
int ReceptiveFieldMargin(Backend backend);

// "[64,3,3,3]": a tensor shape as error messages print it.
std::string ShapeText(c10::IntArrayRef shape);

// The initialisation of a run (train/choices.h's Init): kNormal is the
// original's, every conv weight ~ N(0, 0.01); kHe draws the weights of the
// convolutions followed by ReLU from N(0, 2 / fan_in) and the output's from
// N(0, 0.01). Biases are 0. Drawn from torch's default generator (seed it with
// torch::manual_seed first).
void InitWeights(CSRNet& model, Init init = Init::kNormal);

// Converts the 4-D weights to channels-last (faster bf16/oneDNN convs) or
// back to contiguous NCHW. Values are unchanged.
void SetChannelsLast(CSRNet& model, bool channels_last);
// The memory format of the model's conv weights (inputs are best given in it).
at::MemoryFormat ModelMemoryFormat(CSRNet& model);

// ---- Weight files -----------------------------------------------------------
// Original layout (.h5): one root dataset per parameter name, float32, OIHW.
// Every expected tensor must be present with its exact shape; errors name the
// file and the tensor. Extra datasets are ignored with a warning.
void LoadWeightsH5(CSRNet& model, const std::string& path);
// Written atomically (temporary + rename). A root attribute `backend` records
// the variant (ignored by h5py users who iterate the datasets).
void SaveWeightsH5(CSRNet& model, const std::string& path);
// ImageNet VGG-16 front end from an HDF5 file with torchvision names
// (features.0.weight ... features.21.bias), as tools/export_vgg16.py writes.
void LoadVgg16H5(CSRNet& model, const std::string& path);

// This project's .pt model file (a torch archive: `model` parameters plus
// metadata). SaveModelPt writes atomically; `extra` holds optional scalars
// (epoch, mae) recorded next to the weights.
struct ModelFileInfo {
  Backend backend = Backend::kB;
  int64_t epoch = 0;        // epochs trained when written (0 if unknown)
  double mae = -1.0;        // validation MAE when written (-1 if unknown)
  bool batch_norm = false;  // read only: a --batch-norm trainer's checkpoint (model files hold it folded)
};
void SaveModelPt(CSRNet& model, const std::string& path, const ModelFileInfo& info);

// The `model` part of a .pt archive (shared by model files and checkpoints):
// parameters nested by module name, as torch::nn::Module::save writes them,
// plus the metadata above. ReadModelArchive checks every tensor's presence
// and shape and throws csr::Error(file, "... 'backend.4.weight' ..."); the
// file and the model must agree on batch normalisation (their names differ).
void WriteModelArchive(CSRNet& model, const ModelFileInfo& info, torch::serialize::OutputArchive& archive);
ModelFileInfo ReadModelInfo(torch::serialize::InputArchive& archive, const std::string& file);
void ReadModelArchive(CSRNet& model, torch::serialize::InputArchive& archive, const std::string& file);
// Opens a torch archive, its tensors placed on `device`; throws
// csr::Error(path, ...) when the file is missing or corrupt.
torch::serialize::InputArchive OpenArchive(const std::string& path, c10::Device device = c10::Device(c10::kCPU));

// Reads weights from any supported file: the original .h5 layout, a model .pt
// or a trainer checkpoint .pt (detected from the content, not the name).
// Every .pt is verified in full first (common/io/zip_check.h: CRC-32 of every
// record), every tensor must be finite. RecordedBackend: the variant the file
// records (.pt always; .h5 written by this project; none for the original
// layout). ReadWeightsBackend: that, or B. LoadWeights refuses a file whose
// recorded variant differs from the model's (same shapes, another network).
// A --batch-norm checkpoint loads folded (FoldBatchNorm) into a plain model.
std::optional<Backend> RecordedBackend(const std::string& path);
Backend ReadWeightsBackend(const std::string& path);
void LoadWeights(CSRNet& model, const std::string& path);
// Builds a model with the file's back end and loads its weights.
CSRNet LoadModel(const std::string& path);

// True when the file starts with the HDF5 signature.
bool IsHdf5File(const std::string& path);

}  // namespace csr
