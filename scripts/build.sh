#!/usr/bin/env bash
# Configures and builds csrnet-cpp (Release).
#
#   scripts/build.sh [CMAKE_ARGS...]                   Debian's libtorch-dev (1.13, CPU) into ${BUILD_DIR:-build}
#   scripts/build.sh --libtorch pip [CMAKE_ARGS...]    PyPI's torch wheel (LibTorch 2.x with CUDA and NCCL)
#                                                      into ${BUILD_DIR:-build-pip}
#   ... --target T1 T2 ...                             build only those targets (after the CMake arguments)
#
# --libtorch pip makes (once) a virtual environment outside the source tree,
# ${CSR_TORCH_VENV:-$HOME/.cache/csrnet-cpp/torch-venv}, installs
# torch==${CSR_TORCH_VERSION:-2.15.0} into it (about 5 GB with its CUDA
# libraries; the version this project was last built and tested against),
# and configures against the LibTorch inside the wheel. The tests of that
# build compare against the wheel's own Python torch when run with
# CSR_TEST_PYTHON=$venv/bin/python (it also installs h5py, scipy, opencv and
# onnx there). CSR_TORCH_PYTHON=PATH uses the torch of that Python instead of
# the venv (a machine with its own CUDA PyTorch and no PyPI access).
# docs/training.md, "LibTorch 2.x and CUDA".
set -euo pipefail
cd "$(dirname "$0")/.."

libtorch=debian
if [[ "${1:-}" == "--libtorch" ]]; then
  libtorch=${2:-}
  shift 2 || { echo "build.sh: --libtorch needs debian or pip" >&2; exit 2; }
fi
args=()
case "$libtorch" in
  debian) build_dir=${BUILD_DIR:-build} ;;
  pip)
    build_dir=${BUILD_DIR:-build-pip}
    venv=${CSR_TORCH_VENV:-$HOME/.cache/csrnet-cpp/torch-venv}
    version=${CSR_TORCH_VERSION:-2.15.0}
    python=${CSR_TORCH_PYTHON:-$venv/bin/python}
    case "$(realpath -m "$venv")/" in
      "$(pwd -P)"/*) echo "build.sh: CSR_TORCH_VENV=$venv lies inside the source tree; put it elsewhere" >&2; exit 2 ;;
    esac
    if [[ -n "${CSR_TORCH_PYTHON:-}" ]]; then
      [[ -x "$python" ]] || { echo "build.sh: CSR_TORCH_PYTHON=$python is not an executable" >&2; exit 2; }
    elif [[ ! -x "$venv/bin/python" ]]; then
      echo "build.sh: making $venv with torch==$version from PyPI (once; about 5 GB)" >&2
      python3 -m venv "$venv"
      # The interop tests' packages beside torch (CSR_TEST_PYTHON=$venv/bin/python).
      "$venv/bin/pip" install -q "torch==$version" numpy h5py scipy opencv-python-headless onnx
    fi
    prefix=$("$python" -W ignore -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
      { echo "build.sh: $python cannot import torch (delete $venv to reinstall)" >&2; exit 1; }
    echo "build.sh: LibTorch $("$python" -W ignore -c 'import torch; print(torch.__version__)') from $python" >&2
    args=(-DCMAKE_PREFIX_PATH="$prefix")
    ;;
  *) echo "build.sh: --libtorch $libtorch: expected debian or pip" >&2; exit 2 ;;
esac
cmake_args=() targets=()
while [[ $# -gt 0 ]]; do
  if [[ "$1" == --target ]]; then
    shift
    targets=("$@")
    [[ ${#targets[@]} -gt 0 ]] || { echo "build.sh: --target needs at least one target" >&2; exit 2; }
    break
  fi
  cmake_args+=("$1")
  shift
done
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${args[@]}" "${cmake_args[@]}" >/dev/null
if [[ ${#targets[@]} -gt 0 ]]; then
  cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}"
else
  cmake --build "$build_dir" -j"$(nproc)"
fi
