#!/usr/bin/env bash
# Sets up everything the tests need (packages, builds) and runs every test
# stage, then prints how long each took:
#   lint     the tree is clang-formatted (scripts/format.sh --check) and passes .clang-tidy on
#            common/ and preprocess/ (scripts/tidy.sh), about 30 s
#   release  Release build, the whole ctest suite (slow tests included)
#   deploy   a build without LibTorch (-DCSR_BUILD_TRAIN=OFF): predict links no LibTorch and its
#            ONNX engine passes tests/deploy, about 3 min
#   asan     AddressSanitizer + UBSan build, the quick tests   (scripts/sanitize.sh asan)
#   tsan     ThreadSanitizer build, the multi-threaded tests   (scripts/sanitize.sh tsan)
#   fuzz     libFuzzer build, each fuzz target FUZZ_RUNS inputs (scripts/sanitize.sh fuzz)
# `scripts/test.sh --quick`: the release stage without slow tests, nothing else.
# `scripts/test.sh --stages "release fuzz"`: only those stages.
# Under CI (CI=true) a test that needs chromium, Debian's Python packages,
# ../shared/data or root fails instead of skipping (CSR_REQUIRE, tests/test_skip.h).
set -euo pipefail
cd "$(dirname "$0")/.."

stages="lint release deploy asan tsan fuzz" quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; stages=release; shift ;;
    --stages) stages=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ "${CI:-}" == "true" ]]; then export CSR_REQUIRE=${CSR_REQUIRE:-chromium,python,shared,root}; fi

scripts/deps.sh test
summary=()
current=""
run_stage() {
  local name=$1; shift
  local start=$SECONDS
  current=$name
  echo "== test.sh: stage $name" >&2
  "$@"
  summary+=("$(printf '%-8s %5d s' "$name" $((SECONDS - start)))")
  current=""
}
# A failed stage still reports the times so far and which stage failed.
report_failure() {
  local rc=$?
  if [[ $rc -ne 0 && -n "$current" ]]; then
    echo "== test.sh: stage $current FAILED (exit $rc) after $SECONDS s" >&2
    if [[ ${#summary[@]} -gt 0 ]]; then printf '   %s\n' "${summary[@]}" >&2; fi
  fi
}
trap report_failure EXIT
release() {
  scripts/build.sh
  local args=(--test-dir "${BUILD_DIR:-build}" --output-on-failure -j"$(nproc)")
  if [[ $quick -eq 1 ]]; then args+=(-LE slow); fi
  ctest "${args[@]}"
}
deploy() {
  local dir=${BUILD_DIR:-build}-deploy
  # Only what this stage runs: the tools and tests/deploy.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCSR_BUILD_TRAIN=OFF -DCSR_BUILD_BENCH=OFF >/dev/null
  cmake --build "$dir" -j"$(nproc)" --target csr_tests_deploy
  if ldd "$dir/bin/predict" | grep -q torch; then
    echo "test.sh: $dir/bin/predict links LibTorch in a build without it" >&2
    return 1
  fi
  ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" -R '^deploy_'
}
lint() {
  scripts/format.sh --check
  BUILD_DIR=${BUILD_DIR:-build} scripts/tidy.sh 2> >(grep -v "warnings\? generated" >&2)
}
for s in $stages; do
  case "$s" in
    lint) run_stage lint lint ;;
    release) run_stage release release ;;
    deploy) run_stage deploy deploy ;;
    asan|tsan|fuzz) run_stage "$s" scripts/sanitize.sh "$s" ;;
    *) echo "test.sh: unknown stage '$s'" >&2; exit 2 ;;
  esac
done
echo "== test.sh: all stages passed"
printf '   %s\n' "${summary[@]}"
printf '   %-8s %5d s\n' total "$SECONDS"
