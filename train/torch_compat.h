// The few LibTorch APIs that differ between Debian's LibTorch 1.13 and the
// current 2.x (PyPI's torch wheel, docs/training.md "LibTorch 2.x and
// CUDA"), in one place. Everything else is written once against
// the API both share.
#pragma once

#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

namespace c10d {
class Backend;
class ProcessGroup;
}  // namespace c10d

namespace csr::compat {

// torch.autocast's per-device switches and dtypes (CPU and CUDA): 2.4 made
// them device-type arguments and deprecated the per-device functions.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool AutocastEnabled(c10::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
inline void SetAutocastEnabled(c10::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
inline c10::ScalarType AutocastDtype(c10::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
inline void SetAutocastDtype(c10::DeviceType d, c10::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
inline bool AutocastEnabled(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
inline void SetAutocastEnabled(c10::DeviceType d, bool on) {
  d == c10::DeviceType::CUDA ? at::autocast::set_enabled(on) : at::autocast::set_cpu_enabled(on);
}
inline c10::ScalarType AutocastDtype(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
inline void SetAutocastDtype(c10::DeviceType d, c10::ScalarType t) {
  d == c10::DeviceType::CUDA ? at::autocast::set_autocast_gpu_dtype(t) : at::autocast::set_autocast_cpu_dtype(t);
}
#endif

// The key of a parameter's entry in torch::optim::Optimizer::state(): its
// TensorImpl's address, as a string in 1.13 and as the pointer itself in 2.x.
using OptimizerStateKey = typename std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
template <typename Key = OptimizerStateKey>
Key StateKey(const at::Tensor& param) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;  // how 1.13's c10::guts::to_string spells the address
    key << param.unsafeGetTensorImpl();
    return key.str();
  } else {
    return param.unsafeGetTensorImpl();
  }
}

// What c10d's ProcessGroupGloo and ProcessGroupNCCL derive from and the
// collectives are called on: ProcessGroup in 1.13, Backend in 2.x (where a
// ProcessGroup dispatches to one Backend per device type).
#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif

}  // namespace csr::compat
