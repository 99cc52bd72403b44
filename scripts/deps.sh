#!/usr/bin/env bash
# Installs the Debian 12 packages csrnet-cpp needs, if any are missing.
# Usage: scripts/deps.sh build|test|pip
# As root it runs apt-get; otherwise it prints the command to run.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libopencv-dev libeigen3-dev libnanoflann-dev libhdf5-dev
            libtbb-dev nlohmann-json3-dev libtorch-dev libgloo-dev doctest-dev libmatio-dev libopenblas0-openmp)
# libopenblas0-openmp: Debian's LibTorch calls the system BLAS for some
# convolutions (those that oneDNN does not take, on small inputs); without an
# optimised BLAS installed, libblas.so.3 is the reference one and training on
# small patches runs about 9x slower (docs/training.md, "BLAS"). The OpenMP
# build shares LibTorch's OpenMP threads instead of starting its own.
# libgloo-dev: the headers of Gloo, which c10d's ProcessGroupGloo.hpp includes
# (libtorch-dev ships c10d and links libgloo0, but not Gloo's headers): the
# trainer's multi-process training (docs/training.md).
# Interop tests compare against Debian's scipy/h5py/OpenCV/PyTorch (and check exported ONNX
# models with python3-onnx's checker); the HTML
# report test renders in headless Chromium; the fuzz stage needs clang with
# its libFuzzer/sanitizer runtimes; the lint stage clang-format and clang-tidy; the tmpfs
# tests need util-linux's mount.
test_pkgs=(python3 python3-numpy python3-scipy python3-h5py python3-opencv python3-torch python3-onnx chromium
           clang libclang-rt-14-dev clang-format clang-tidy)

# scripts/build.sh --libtorch pip: a virtual environment for PyPI's torch wheel
# (LibTorch 2.x with CUDA and NCCL) instead of libtorch-dev; the wheel's CMake
# config looks for a CUDA toolkit (nvcc), which is not a Debian 12 package
# here: NVIDIA's cuda-toolkit (docs/training.md, "LibTorch 2.x and CUDA").
pip_pkgs=(python3-venv python3-pip libgloo-dev)

case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  pip) want=(build-essential cmake pkg-config libopencv-dev libeigen3-dev libnanoflann-dev libhdf5-dev libtbb-dev
             nlohmann-json3-dev doctest-dev libmatio-dev "${pip_pkgs[@]}") ;;
  *) echo "deps.sh: unknown set '$1' (build, test or pip)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi

echo "csrnet-cpp: installing missing packages: ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "csrnet-cpp: run as root, or install them yourself: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
