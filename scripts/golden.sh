#!/usr/bin/env bash
# Runs every tool once, deterministically, on the synthetic set and on the
# shared ShanghaiTech samples (when ../shared/data is there), and prints a
# digest of what they wrote (tools/output_digest.py). A refactoring must not
# change the digest:
#   scripts/golden.sh /tmp/before > before.txt   # on the old commit
#   scripts/golden.sh /tmp/after  > after.txt    # on the new one
#   diff before.txt after.txt
# Uses ${BUILD_DIR:-build}/bin; builds nothing. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BUILD_DIR:-build}/bin
out=${1:?usage: scripts/golden.sh OUTDIR}
rm -rf "$out"
mkdir -p "$out"
q() { "$@" > /dev/null 2>> "$out/stderr.log"; }

q "$bin/make_synthetic" --out "$out/syn" --part A --seed 3
q "$bin/gt_gen" --root "$out/syn" --part A --threads 2
q "$bin/crop_shards" --root "$out/syn" --part A --out "$out/shards" --threads 2
q "$bin/trainer" "$out/shards" --out "$out/run" --max-steps 6 --lr 1e-6 --seed 1 --threads 2 --workers 1 \
  --eval-tile 0 --checkpoint-minutes 0 --device cpu
q "$bin/evaluate" --weights "$out/run/model_best.pt" "$out/shards" --csv "$out/eval/eval.csv" \
  --json "$out/eval/eval.json" --threads 2
first=$(ls "$out"/syn/part_A_final/test_data/images/*.jpg | head -n 1)
q "$bin/predict" --weights "$out/run/model_best.h5" --out "$out/predict" --threads 2 "$first"
dirs=("$out/syn" "$out/shards" "$out/run" "$out/eval" "$out/predict")

shared=../shared/data/ShanghaiTech
if [[ -d "$shared" ]]; then
  mkdir -p "$out/sha"
  cp -r "$shared"/. "$out/sha/"
  chmod -R u+w "$out/sha"
  find "$out/sha" -name '*.h5' -path '*ground_truth*' -delete
  for part in A B; do
    if compgen -G "$out/sha/part_${part}*" > /dev/null; then
      q "$bin/gt_gen" --root "$out/sha" --part "$part" --threads 2
      q "$bin/crop_shards" --root "$out/sha" --part "$part" --out "$out/sha_shards_$part" --threads 2
      dirs+=("$out/sha_shards_$part")
    fi
  done
  dirs+=("$out/sha")
fi
/usr/bin/python3 tools/output_digest.py "${dirs[@]}"
