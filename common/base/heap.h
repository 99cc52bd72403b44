// The process's malloc policy (glibc), in one place. LibTorch allocates and
// frees hundreds of MB of activations per image or step; glibc maps blocks
// that large on malloc and unmaps them on free, so every layer page-faults
// fresh zeroed memory. Each tool picks the policy that fits its work once,
// early in main():
//
//   training   UseTrainingHeap()    blocks up to 1 GB stay in the heap
//   inference  UseInferenceHeap()   whole images reuse the heap; tiled
//                                   images return large blocks (bounded peak)
//
// A process that calls neither keeps glibc's defaults.
#pragma once

namespace csr {

// Training: a step allocates and frees ~1 GB of activations (~50,000 page
// faults, tens of ms, with glibc's defaults). Blocks up to 1 GB come from the
// heap and the heap top is not trimmed below 1 GB free: the resident size
// stays at its peak.
void UseTrainingHeap();

// Inference tools (predict, evaluate): while images run whole, freed
// activation buffers stay in the process for the next layer and image
// (10-20 % faster). The heap also keeps the holes between blocks of different
// sizes (bf16 at 3072 x 2304: 2.0 GB peak instead of 0.95 GB), so an image
// that runs in tiles switches back to mapped blocks and its peak stays
// bounded by one tile. The switch is InferenceHeapFor, per image.
void UseInferenceHeap();

// Called before each image by the inference engine: reuse the heap for a
// whole image, map and return large blocks for a tiled one. Does nothing
// unless UseInferenceHeap() was called (tests and library users keep
// glibc's defaults) or the mode is already the one asked for.
void InferenceHeapFor(bool tiled);

}  // namespace csr
