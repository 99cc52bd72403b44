#!/usr/bin/env bash
# Runs .clang-tidy's checks on the non-LibTorch sources (common/, preprocess/),
# with the compile commands of ${BUILD_DIR:-build} (configured here with
# CMAKE_EXPORT_COMPILE_COMMANDS). Exit 1 on any finding. About 30 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
command -v clang-tidy > /dev/null || { echo "tidy.sh: clang-tidy not found (apt-get install clang-tidy)" >&2; exit 2; }
cmake -S . -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON > /dev/null
git ls-files 'common/*.cpp' 'preprocess/*.cpp' | xargs -P"$(nproc)" -n4 clang-tidy -p "$build" --quiet
echo "tidy.sh: common/ and preprocess/ pass .clang-tidy"
