#!/usr/bin/env bash
# The main job end to end on the built-in synthetic dataset (or on a real
# ShanghaiTech copy: scripts/demo.sh --root /data/ShanghaiTech --part A; any
# other layout: scripts/demo.sh --dataset nwpu --root /data/NWPU-Crowd).
# Installs missing packages (as root), builds the tools it runs (Release), then runs
# make_synthetic -> gt_gen -> crop_shards -> trainer -> evaluate -> predict,
# and says what it produced.
set -euo pipefail
cd "$(dirname "$0")/.."

root="" part=A out=demo_out dataset=shanghaitech fold=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --part) part=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --fold) fold=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

scripts/deps.sh build
# Only the tools the demo runs (the tests and benchmarks are scripts/test.sh's).
scripts/build.sh --target make_synthetic gt_gen crop_shards trainer evaluate predict
bin=${BUILD_DIR:-build}/bin
mkdir -p "$out"

extra=()
if [[ "$dataset" != shanghaitech ]]; then
  # Any other layout of docs/datasets.md: shards straight from the annotations
  # (densities made in memory, images rescaled by the dataset's default rule).
  if [[ -z "$root" ]]; then
    root=$out/$dataset
    echo "== make_synthetic: a small $dataset-layout dataset in $root"
    "$bin/make_synthetic" --like "$dataset" --out "$root" --overwrite
  fi
  [[ "$dataset" == ucf50 ]] && extra=(--fold "$fold")
  echo "== crop_shards: $dataset from its annotations into HDF5 shards (no gt_gen needed)"
  "$bin/crop_shards" --dataset "$dataset" --root "$root" "${extra[@]}" --out "$out/shards" --overwrite
else
  if [[ -z "$root" ]]; then
    root=$out/ShanghaiTech
    # Images of 256-320 px a side (crops of 128-160 px: a fp32 step on a
    # 2-core AVX2 CPU stays under a second) and density maps with one fixed
    # 15 px kernel, which a network learning from scratch fits in a few hundred
    # steps; a real copy keeps the reference kernels (docs/synthetic.md).
    echo "== make_synthetic: a small ShanghaiTech-layout dataset in $root"
    "$bin/make_synthetic" --out "$root" --part "$part" --max-size 320 --overwrite
    gt_args=(--kernel fixed --sigma 15)
  else
    gt_args=()
  fi
  echo "== gt_gen: density maps for part $part"
  "$bin/gt_gen" --root "$root" --part "$part" "${gt_args[@]}"
  echo "== crop_shards: the paper's nine crops per training image, whole test images, into HDF5 shards"
  "$bin/crop_shards" --root "$root" --part "$part" --out "$out/shards" --overwrite
fi
"$bin/crop_shards" --inspect "$out/shards" --verify

# The column named $2 of CSV file $1: its mean (awk, no Python needed).
csv_mean() {
  awk -F, -v col="$2" 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == col) c = i; next }
    { s += $c; n += 1 } END { if (!c || !n) exit 1; printf "%.2f\n", s / n }' "$1"
}
# MAE of always predicting $2 heads on the images of CSV file $1 (column "count").
csv_constant_mae() {
  awk -F, -v m="$2" 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "count") c = i; next }
    { d = $c - m; s += d < 0 ? -d : d; n += 1 } END { if (!c || !n) exit 1; printf "%.2f\n", s / n }' "$1"
}

# The demo's training (docs/synthetic.md, "The demo's training settings"): every
# layer from scratch (no ImageNet front end here), so He initialisation, batch
# normalisation while training (model_best holds it folded into the
# convolutions: a plain CSRNet) and Adam at 1e-4, rather than the original's
# N(0, 0.01) and SGD at 1e-7; one epoch (216 steps); --precision auto: bf16
# where it measures faster than fp32 on this CPU, else fp32 (the resume keeps
# the first run's choice). On a real dataset the step cap keeps it a short run.
train=(--init he --batch-norm --optimizer adam --lr 1e-4 --epochs 1 --precision auto --seed 1)

echo "== before training: the initialised model (one step at lr 1e-30 moves no weight, only the normalisation's running statistics) and the training mean"
before=$out/run_init
rm -rf "$before"
"$bin/trainer" "$out/shards" --out "$before" "${train[@]}" --max-steps 1 --lr 1e-30
"$bin/evaluate" --weights "$before/model_best.pt" "$out/shards" --csv "$out/eval_before.csv"
# The training images' annotation counts (whole images; the shards hold crops).
if [[ "$dataset" == shanghaitech ]]; then
  "$bin/evaluate" --weights "$before/model_best.pt" --root "$root" --part "$part" --split train \
    --csv "$out/train_counts.csv" >/dev/null
else
  "$bin/evaluate" --weights "$before/model_best.pt" --dataset "$dataset" --root "$root" "${extra[@]}" --split train \
    --csv "$out/train_counts.csv" >/dev/null
fi
train_mean=$(csv_mean "$out/train_counts.csv" count)
mae_before=$(csv_mean "$out/eval_before.csv" abs_error)
mae_mean=$(csv_constant_mae "$out/eval_before.csv" "$train_mean")

echo "== trainer: CSRNet from scratch on the shards (--precision auto), stopped mid-run, then an exact resume"
run=$out/run
rm -rf "$run"
"$bin/trainer" "$out/shards" --out "$run" "${train[@]}" --max-steps 150
"$bin/trainer" --resume "$run/checkpoint.pt" --max-steps 216

echo "== evaluate: the trained model on the shard set's test split"
"$bin/evaluate" --weights "$run/model_best.pt" "$out/shards" --csv "$out/eval.csv" --json "$out/eval.json" \
  --report "$out/report.html"
mae_after=$(csv_mean "$out/eval.csv" abs_error)
echo
echo "Test MAE (mean |predicted - annotated count| over the test images):"
printf '  %-58s %8s\n' "before training (the initialised model)" "$mae_before" \
  "always predicting the training images' mean count ($train_mean)" "$mae_mean" \
  "after training ($run/model_best.pt)" "$mae_after"

echo "== predict"
if [[ "$dataset" == nwpu ]]; then
  # The unlabelled test split, in the benchmark's upload format.
  "$bin/predict" --weights "$run/model_best.h5" --out "$out/predict" --nwpu-submission "$out/nwpu_test.txt" "$root"
elif [[ "$dataset" == shanghaitech ]]; then
  first_test=$(ls "$root"/part_${part}*/test_data/images/*.jpg | head -n 1)
  "$bin/predict" --weights "$run/model_best.h5" --out "$out/predict" "$first_test"
else
  first=$(find "$root" -name '*.jpg' | sort | head -n 1)
  "$bin/predict" --weights "$run/model_best.h5" --out "$out/predict" "$first"
fi

if [[ "$dataset" != shanghaitech ]]; then
  echo
  echo "Produced:"
  echo "  dataset        $root ($dataset layout, docs/datasets.md)"
  echo "  shards         $out/shards (manifest.json, train/ and test/ shard-NNNNN.h5; docs/shard_format.md)"
  echo "  training run   $run (config.json, train_log.jsonl, checkpoint.pt, model_best.pt, model_best.h5)"
  echo "  evaluation     $out/eval.csv, $out/eval.json, $out/report.html"
  echo "  prediction     $out/predict$([[ "$dataset" == nwpu ]] && echo ", $out/nwpu_test.txt (NWPU-Crowd's upload format)")"
  exit 0
fi

echo
echo "Produced:"
echo "  dataset        $root/part_${part}_final (images, GT_IMG_n.mat annotations)"
echo "  density maps   $root/part_${part}_final/{train,test}_data/ground_truth/IMG_n.h5 (dataset 'density')"
echo "  image lists    $root/part_${part}_train.json, $root/part_${part}_test.json"
echo "  shards         $out/shards (manifest.json, train/ and test/ shard-NNNNN.h5; docs/shard_format.md)"
echo "  training run   $run (config.json, train_log.jsonl, checkpoint.pt, model_best.pt, model_best.h5)"
echo "  evaluation     $out/eval.csv, $out/eval.json, $out/report.html"
echo "  prediction     $out/predict (heatmap overlay PNG and density .h5)"
