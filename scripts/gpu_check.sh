#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU: builds against a CUDA
# LibTorch, runs the tests labelled gpu (a skip counts as a failure here), a
# short fp16 training run on the GPU stopped and resumed next to a straight
# one, evaluate and predict on the GPU, and the train/predict benchmarks on
# the GPU with PyTorch's figures beside ours; then prints a summary.
#
#   scripts/gpu_check.sh [--out DIR] [--no-build] [--quick-tests]
#
# The LibTorch is PyPI's torch wheel (scripts/build.sh --libtorch pip: a venv
# outside the tree), or that of an existing Python given as
# CSR_TORCH_PYTHON=/path/to/python (a machine with its own CUDA PyTorch). Its
# Python also runs PyTorch's side of the benchmarks and the interop tests.
# --quick-tests also runs every quick test against that LibTorch.
# docs/training.md, "LibTorch 2.x and CUDA".
set -uo pipefail
cd "$(dirname "$0")/.."

out=gpu_check_out build=1 quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --quick-tests) quick=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

venv=${CSR_TORCH_VENV:-$HOME/.cache/csrnet-cpp/torch-venv}
python=${CSR_TORCH_PYTHON:-$venv/bin/python}
export BUILD_DIR=${BUILD_DIR:-build-pip}
bin=$BUILD_DIR/bin
mkdir -p "$out"
summary=()
failed=0
# Runs one stage: its output goes to $out/NAME.log; the summary gets a line.
stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then
    summary+=("$(printf '%-22s ok      %5ds' "$name" $((SECONDS - start)))")
  else
    summary+=("$(printf '%-22s FAILED  %5ds  (see %s)' "$name" $((SECONDS - start)) "$out/$name.log")")
    failed=1
    tail -n 5 "$out/$name.log" >&2
  fi
}

if ! nvidia-smi -L >"$out/gpus.txt" 2>&1; then
  echo "gpu_check.sh: no NVIDIA GPU visible (nvidia-smi -L failed: $(head -n 1 "$out/gpus.txt"))" >&2
  exit 1
fi
cat "$out/gpus.txt"
if [[ $build == 1 ]]; then
  scripts/deps.sh pip || exit 1
  stage build scripts/build.sh --libtorch pip
  [[ $failed == 0 ]] || { printf '%s\n' "${summary[@]}"; exit 1; }
fi
[[ -x "$bin/trainer" ]] || { echo "gpu_check.sh: no $bin/trainer (run without --no-build)" >&2; exit 1; }

export CSR_TEST_PYTHON=$python
stage gpu_tests env CSR_REQUIRE=gpu ctest --test-dir "$BUILD_DIR" -L gpu --output-on-failure
if [[ $quick == 1 ]]; then
  stage quick_tests ctest --test-dir "$BUILD_DIR" -L quick -j"$(nproc)" --output-on-failure
fi

data=$out/data
stage pipeline bash -c "'$bin/make_synthetic' --out '$data/ShanghaiTech' --part A --overwrite &&
  '$bin/gt_gen' --root '$data/ShanghaiTech' --part A &&
  '$bin/crop_shards' --root '$data/ShanghaiTech' --part A --out '$data/shards' --overwrite"

# fp16 on the GPU: a straight run and one stopped at step 200 and resumed;
# the summary prints both runs' last epoch (loss, MAE, patches/s).
train=(--device cuda --precision fp16 --init he --optimizer adam --lr 3e-5 --epochs 3 --seed 1)
rm -rf "$out/run_straight" "$out/run_split"
stage train_straight "$bin/trainer" "$data/shards" --out "$out/run_straight" "${train[@]}"
stage train_stopped "$bin/trainer" "$data/shards" --out "$out/run_split" "${train[@]}" --max-steps 200
# --max-steps 0 lifts the stopped run's limit, which its checkpoint's config keeps.
stage train_resumed "$bin/trainer" --resume "$out/run_split/checkpoint.pt" --max-steps 0
stage evaluate_gpu "$bin/evaluate" --weights "$out/run_straight/model_best.pt" "$data/shards" --device cuda \
  --precision fp16 --json "$out/eval_gpu.json"
stage predict_gpu bash -c "'$bin/predict' --weights '$out/run_straight/model_best.h5' --device cuda \
  --out '$out/predict' \$(ls '$data'/ShanghaiTech/part_A*/test_data/images/*.jpg | head -n 3)"

stage train_bench "$bin/train_bench" --device cuda --python "$python" --steps 20 --warmup 5 --converge-steps 0
stage predict_bench "$bin/predict_bench" --device cuda --python "$python" --images 8 --rounds 3

echo
echo "gpu_check summary ($(head -n 1 "$out/gpus.txt"); LibTorch from $python)"
printf '  %s\n' "${summary[@]}"
last_epoch() { [[ -f "$1" ]] && tail -n 1 "$1" || echo "(no log)"; }
echo "  last epoch, straight: $(last_epoch "$out/run_straight/train_log.jsonl")"
echo "  last epoch, resumed:  $(last_epoch "$out/run_split/train_log.jsonl")"
echo "  train_bench (steps/s, ours vs PyTorch):"
sed -n '/configuration/,$p' "$out/train_bench.log" 2>/dev/null | sed 's/^/    /'
echo "  predict_bench (images/s):"
sed -n '/best of/,$p' "$out/predict_bench.log" 2>/dev/null | sed 's/^/    /'
exit $failed
