#!/usr/bin/env bash
# Set up, then run Sentinel's pipeline on the embedded default model (SmolLM2-135M).
# Steps are added here as the pipeline grows; each prints where its output is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== pull the embedded model"
MODEL_DIR=$(sentinel models pull smollm2-135m)
echo "model folder: $MODEL_DIR"
sentinel models list
