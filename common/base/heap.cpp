#include "common/base/heap.h"

#include <malloc.h>

#include <limits>

namespace csr {
namespace {

enum class Mode { kDefault, kTraining, kInferenceReuse, kInferenceBounded };
Mode g_mode = Mode::kDefault;
bool g_inference = false;  // UseInferenceHeap() was called

}  // namespace

void UseTrainingHeap() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  g_mode = Mode::kTraining;
}

void UseInferenceHeap() {
  g_inference = true;
  InferenceHeapFor(false);
}

void InferenceHeapFor(bool tiled) {
  const Mode want = tiled ? Mode::kInferenceBounded : Mode::kInferenceReuse;
  if (!g_inference || g_mode == want) return;
  g_mode = want;
  if (!tiled) {
    // Nothing is mapped per block, and the heap top is never trimmed.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  } else {
    // glibc's own steady state (its dynamic threshold rises to 32 MB):
    // blocks under 32 MB are reused from the heap, larger ones are mapped
    // and returned on free; what the reuse mode kept is handed back now.
    mallopt(M_MMAP_MAX, 65536);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    malloc_trim(0);
  }
}

}  // namespace csr
