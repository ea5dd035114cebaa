# Source me (". scripts/env.sh"): activates .venv and, on Linux, preloads OpenBLAS so MLX's
# CPU backend does fp32 matmuls ~20x faster than its bundled reference BLAS (macOS uses Metal).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/activate"
SENTINEL_BLAS=/usr/lib/$(uname -m)-linux-gnu/openblas-pthread/libblas.so.3
if [ "$(uname -s)" = Linux ] && [ -f "$SENTINEL_BLAS" ]; then
    case ":${LD_PRELOAD:-}:" in *":$SENTINEL_BLAS:"*) ;; *) export LD_PRELOAD="$SENTINEL_BLAS${LD_PRELOAD:+:$LD_PRELOAD}" ;; esac
fi
# Sleep instead of spin while waiting for OpenMP work: on a busy CPU, spinning torch threads
# starve each other (measured: a LoRA step on SmolLM2-135M took 83 s spinning, 3.6 s passive).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
