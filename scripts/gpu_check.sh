#!/usr/bin/env bash
# The prepared GPU check (docs/GPU.md): CUDA-only tests, tokens/s and peak memory per forge stage, one short
# forge; writes OUT_DIR/gpu_check.json. Installs nothing from the network: the repo runs from this working tree
# (PYTHONPATH), and carried wheels (build/gpu_carry*/ *.whl) are installed offline, only for missing packages.
#
#   bash scripts/gpu_check.sh OUT_DIR [--dry-run] [--budget SECONDS]   # the check (default budget 480 s)
#   bash scripts/gpu_check.sh --stash                                   # keep this call's carried files
#   bash scripts/gpu_check.sh --prepare                                 # here, before a GPU loan: build carries
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

usage() { echo "usage: bash scripts/gpu_check.sh OUT_DIR [--dry-run] [--budget SECONDS] | --stash | --prepare" >&2; }

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3 || command -v python)"; fi
STASH="${SENTINEL_GPU_STASH:-$HOME/.cache/sentinel/gpu-stash}"
export PYTHONPATH="$ROOT:$STASH/site${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

stash() {  # every call's carried files join the stash, so parts carried in earlier calls are still here
  mkdir -p "$STASH"
  local dir
  for dir in "$ROOT"/build/gpu_carry*/; do
    [[ -d "$dir" ]] && cp -f "$dir"* "$STASH"/ 2>/dev/null || true
  done
  "$PY" -m bench.gpu_check_carry install "$STASH"
}

OUT="" DRY="" BUDGET=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY="--dry-run"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift 2 ;;
    --stash) stash; ls -la "$STASH"; exit 0 ;;
    --prepare) shift; exec "$PY" -m bench.gpu_check_carry prepare "$@" ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage; exit 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
[[ -n "$OUT" ]] || { usage; exit 2; }
if [[ -z "$BUDGET" ]]; then BUDGET=$([[ -n "$DRY" ]] && echo 240 || echo 480); fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
CARRY=()
if [[ -z "$DRY" ]]; then stash; CARRY=(--carry-dir "$STASH"); fi  # a dry run uses nothing carried (tiny, random)
export SENTINEL_HOME="${TMPDIR:-/tmp}/sentinel-gpu-check-home"  # nothing leaks into ~/.cache/sentinel
# The Python side keeps its own per-section limits; this outer one only catches a stuck interpreter.
exec timeout -k 10 "$(( ${BUDGET%.*} + 30 ))" "$PY" -m bench.gpu_check "$OUT" --budget "$BUDGET" \
  ${CARRY[@]+"${CARRY[@]}"} $DRY
