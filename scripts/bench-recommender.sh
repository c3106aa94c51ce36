#!/usr/bin/env bash
# Runs the peers (implicit's models, and the dense numpy EASE of ../shared/anchors/baseline_ease_sansa.py) and Veil
# on the ml-100k split in the same run and prints the tables and ratios.
# Usage: scripts/bench-recommender.sh [REPEATS]   (needs ../shared and a release build: make release)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
REPEATS=${1:-3}
VENV=.venv-anchors
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q implicit==0.7.3 numpy scipy threadpoolctl
fi
[ -x .build/release/veil ] || { echo "build first: make release" >&2; exit 1; }
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
for threads in 1 2; do
  peer_threads=$([ "$threads" = 2 ] && echo 0 || echo 1)
  OPENBLAS_NUM_THREADS=1 "$VENV/bin/python" "$SHARED/anchors/baseline_implicit.py" \
    --split "$SHARED/data/ml-100k/split" --format ml-100k --catalog "$SHARED/data/ml-100k/u.item" \
    --threads "$peer_threads" --repeats "$REPEATS" --json "$OUT/implicit-$threads.json" > "$OUT/implicit-$threads.md" 2> "$OUT/implicit-$threads.log"
  : > "$OUT/veil-$threads.jsonl"
  for r in $(seq "$REPEATS"); do
    .build/release/veil evaluate --train "$SHARED/data/ml-100k/split/train.tsv" --test "$SHARED/data/ml-100k/split/test.tsv" \
      --items "$SHARED/data/ml-100k/u.item" --model all --threads "$threads" --json >> "$OUT/veil-$threads.jsonl"
  done
done
# The dense EASE in numpy (λ chosen on validation); its SANSA half needs packages this script does not install, so
# only the EASE line is kept (the script prints it before it reaches SANSA).
OPENBLAS_NUM_THREADS=2 "$VENV/bin/python" "$SHARED/anchors/baseline_ease_sansa.py" \
  --split "$SHARED/data/ml-100k/split" --format ml-100k --catalog "$SHARED/data/ml-100k/u.item" > "$OUT/ease.txt" 2> "$OUT/ease.log" || true
python3 scripts/bench_report.py "$OUT"
