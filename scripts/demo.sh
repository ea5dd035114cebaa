#!/usr/bin/env bash
# Set up, then run Sentinel's whole pipeline on the embedded default model (SmolLM2-135M):
# pull -> forge (small CPU-sized settings) -> convert to MLX -> verify -> card -> one generated answer.
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

step "2/6 forge: code-domain LoRA + head pruning, 2 cycles (small settings sized for a 2-core CPU)"
sentinel forge smollm2-135m --domain code --out "$OUT/forged" --force \
    --prune-level 0.33 --cycles 2 --steps 20 --batch-size 1 --seq-len 128 \
    --train-tokens 50000 --eval-tokens 2048 --calib-windows 4

step "3/6 convert the forged checkpoint to MLX (fp16)"
sentinel convert "$OUT/forged/model" --to mlx --out "$OUT/forged-mlx" --force

step "4/6 verify on this machine (measured here; MacBook targets are estimates unless run on one)"
sentinel verify "$OUT/forged-mlx"   # CPU defaults: contexts 64,256; Metal: 512,2048,8192

step "5/6 model card"
sentinel card "$OUT/forged-mlx" --report "$OUT/forged/report.json"

step "6/6 ask the forged model a question"
sentinel generate "$OUT/forged-mlx" --max-tokens 80 \
    --prompt "Write a Python function that returns the n-th Fibonacci number."

printf '\n== outputs\n'
echo "forge report:   $OUT/forged/report.md (plots in $OUT/forged/plots/)"
echo "forged (torch): $OUT/forged/model"
echo "forged (MLX):   $OUT/forged-mlx"
echo "verification:   $OUT/forged-mlx/verify.md"
echo "model card:     $OUT/forged-mlx/README.md"
