#!/usr/bin/env bash
# Set up, then run Sentinel's whole pipeline on the embedded default model (SmolLM2-135M):
# pull -> forge (small CPU-sized settings) -> convert to MLX -> verify -> card -> base vs forged answer,
# and a verdict computed from the report (the forged model is compared with its unpruned control).
# Outputs go under $DEMO_OUT (default ./demo-out); each step prints where its result is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1/6 pull the embedded model"
MODEL_DIR=$(sentinel models pull smollm2-135m)
echo "base model: $MODEL_DIR"

step "2/6 forge: keep 75% of the parameters (domain vocabulary + heads + MLP channels), 2 cycles of global distillation (CPU-sized)"
sentinel forge smollm2-135m --domain code --out "$OUT/forged" --force \
    --target-params 0.75 --steps 16 --batch-size 2 --seq-len 128 --budget 12k \
    --train-tokens 50000 --eval-tokens 2048 --calib-windows 8

step "3/6 convert the forged checkpoint to MLX (fp16)"
sentinel convert "$OUT/forged/model" --to mlx --out "$OUT/forged-mlx" --force

step "4/6 verify on this machine (measured here; MacBook targets are estimates unless run on one)"
sentinel verify "$OUT/forged-mlx"   # CPU defaults: contexts 64,256; Metal: 512,2048,8192

step "5/6 model card"
sentinel card "$OUT/forged-mlx" --report "$OUT/forged/report.json"

PROMPT="Write a Python function that returns the n-th Fibonacci number."
step "6/6 the same question to the base model and to the forged model (greedy)"
echo "-- base SmolLM2-135M:"
sentinel convert smollm2-135m --to mlx --out "$OUT/base-mlx" --force >/dev/null
sentinel generate "$OUT/base-mlx" --max-tokens 80 --temp 0 --prompt "$PROMPT"
echo "-- forged:"
sentinel generate "$OUT/forged-mlx" --max-tokens 80 --temp 0 --prompt "$PROMPT"

printf '\n== verdict (from %s)\n' "$OUT/forged/report.json"
python - "$OUT/forged/report.json" <<'PY'
import json, sys
from sentinel.verdict import verdict
rows = json.load(open(sys.argv[1]))["rows"]
for r in rows:
    print(f"{r['row']:>18}: {r['bpb']:.4f} bits/byte (PPL {r['ppl']:8.3f}, vocabulary {r['vocab_size']:,})  "
          f"params {r['params']:>12,}")
print(verdict(rows))
print("(demo-scale training: a few CPU minutes; docs/BENCHMARKS.md has longer runs)")
PY

printf '\n== outputs\n'
echo "forge report:   $OUT/forged/report.md (plots in $OUT/forged/plots/)"
echo "forged (torch): $OUT/forged/model"
echo "forged (MLX):   $OUT/forged-mlx"
echo "verification:   $OUT/forged-mlx/verify.md"
echo "model card:     $OUT/forged-mlx/README.md"
