#!/usr/bin/env bash
# The main job end to end on the built-in synthetic dataset (or on a real
# ShanghaiTech copy: scripts/demo.sh --root /data/ShanghaiTech --part A; any
# other layout: scripts/demo.sh --dataset nwpu --root /data/NWPU-Crowd).
# Installs missing packages (as root), builds Release, then runs
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
scripts/build.sh
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
    echo "== make_synthetic: a small ShanghaiTech-layout dataset in $root"
    "$bin/make_synthetic" --out "$root" --part "$part" --overwrite
  fi
  echo "== gt_gen: density maps for part $part"
  "$bin/gt_gen" --root "$root" --part "$part"
  echo "== crop_shards: the paper's nine crops per training image, whole test images, into HDF5 shards"
  "$bin/crop_shards" --root "$root" --part "$part" --out "$out/shards" --overwrite
fi
"$bin/crop_shards" --inspect "$out/shards" --verify

echo "== trainer: a short CSRNet run on the shards (bf16 autocast), then an exact resume"
run=$out/run
rm -rf "$run"
"$bin/trainer" "$out/shards" --out "$run" --max-steps 40 --lr 1e-6 --precision bf16 --seed 1
"$bin/trainer" --resume "$run/checkpoint.pt" --max-steps 80

echo "== evaluate: the trained model on the shard set's test split"
"$bin/evaluate" --weights "$run/model_best.pt" "$out/shards" --csv "$out/eval.csv" --json "$out/eval.json" \
  --report "$out/report.html"

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
