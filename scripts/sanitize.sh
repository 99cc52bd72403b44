#!/usr/bin/env bash
# The fault-finding builds, each in its own folder, each followed by its tests:
#   scripts/sanitize.sh asan   AddressSanitizer + UBSan build (gcc, LibTorch tools included), quick tests
#   scripts/sanitize.sh tsan   ThreadSanitizer build (gcc, no LibTorch), the multi-threaded tests
#   scripts/sanitize.sh fuzz   libFuzzer + ASan + UBSan build (clang), each fuzz target for
#                              FUZZ_RUNS inputs (default 50000, seed FUZZ_SEED=1), at most FUZZ_SECONDS (60) each, from the seed corpus
# Build folders: build-asan, build-tsan, build-fuzz (override with BUILD_DIR).
# Warnings are not errors here: the Release stage enforces -Werror, and gcc's
# warnings misfire on instrumented code.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: scripts/sanitize.sh asan|tsan|fuzz}
jobs=$(nproc)
supp=$PWD/tests/sanitizers

# Dependencies are Debian's uninstrumented builds: LeakSanitizer reports
# their process-lifetime allocations (HDF5's per-thread error stacks,
# LibTorch's registries), which the suppressions name; anything of ours fails.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# die_after_fork=0: the death tests (CSR_ASSERT aborts) fork a child that must run on.
export TSAN_OPTIONS=suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1:die_after_fork=0:history_size=7

case "$stage" in
  asan)
    dir=${BUILD_DIR:-build-asan}
    # Benchmarks are timing tools, never run by tests: not worth instrumenting.
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCSR_SANITIZE=ON -DCSR_BUILD_BENCH=OFF -DCSR_WERROR=OFF >/dev/null
    # The quick tests' executables (and the tools they run), nothing else.
    cmake --build "$dir" -j"$jobs" --target csr_tests_quick
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" -L quick
    ;;
  tsan)
    dir=${BUILD_DIR:-build-tsan}
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCSR_TSAN=ON -DCSR_BUILD_TRAIN=OFF -DCSR_WERROR=OFF >/dev/null
    # The code that runs threads: gt_gen and crop_shards (oneTBB pipelines),
    # the shard reader (concurrent reads), HDF5 and matio under the lock, the
    # progress bar and the logger.
    tsan_tests='^(preprocess_gt_gen_test|preprocess_crop_shards_test|preprocess_density_test|common_shards_test|common_mat_io_test|common_h5_test|common_progress_log_test)(_optional)?$'
    cmake --build "$dir" -j"$jobs" --target gt_gen crop_shards make_synthetic preprocess_gt_gen_test \
      preprocess_crop_shards_test preprocess_density_test common_shards_test common_mat_io_test common_h5_test \
      common_progress_log_test
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" -R "$tsan_tests"
    ;;
  fuzz)
    dir=${BUILD_DIR:-build-fuzz}
    CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCSR_BUILD_TRAIN=OFF -DCSR_FUZZ=ON -DCSR_WERROR=OFF \
      -DCSR_FUZZ_SECONDS="${FUZZ_SECONDS:-60}" \
      -DCSR_FUZZ_RUNS="${FUZZ_RUNS:-50000}" -DCSR_FUZZ_SEED="${FUZZ_SEED:-1}" >/dev/null
    cmake --build "$dir" -j"$jobs" --target csr_fuzz_targets
    # libFuzzer runs one input at a time in one thread: a target per core.
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" -L fuzz
    ;;
  *) echo "sanitize.sh: unknown stage '$stage' (asan, tsan or fuzz)" >&2; exit 2 ;;
esac
