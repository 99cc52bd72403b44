#!/usr/bin/env bash
# Sets up everything the tests need (packages, build) and runs the whole
# suite with ctest. `scripts/test.sh --quick` skips tests labelled slow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
scripts/build.sh
ctest_args=(--test-dir "${BUILD_DIR:-build}" --output-on-failure -j"$(nproc)")
if [[ "${1:-}" == "--quick" ]]; then ctest_args+=(-LE slow); fi
ctest "${ctest_args[@]}"
