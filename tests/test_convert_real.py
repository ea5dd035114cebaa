"""Real SmolLM2-135M: our converter against stock ``mlx_lm.convert`` and against torch; peak memory."""

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

pytestmark = pytest.mark.slow
PROMPT = "The three most important things about gardening are"


@pytest.fixture(scope="module")
def stock_fp32(real_model, tmp_path_factory) -> Path:
    from mlx_lm.convert import convert

    out = tmp_path_factory.mktemp("stock") / "smollm2-stock-fp32"
    convert(str(real_model), str(out), dtype="float32")
    return out


def test_same_files_as_stock_mlx_lm_convert(real_mlx_fp32, stock_fp32):
    ours, stock = mx.load(str(real_mlx_fp32 / "model.safetensors")), mx.load(str(stock_fp32 / "model.safetensors"))
    assert sorted(ours) == sorted(stock) and "lm_head.weight" not in ours  # tied: dropped like stock
    for name, tensor in ours.items():
        assert tensor.dtype == stock[name].dtype == mx.float32
        assert mx.array_equal(tensor, stock[name]).item(), name
    index = [json.loads((p / "model.safetensors.index.json").read_text()) for p in (real_mlx_fp32, stock_fp32)]
    assert index[0] == index[1]
    config = [json.loads((p / "config.json").read_text()) for p in (real_mlx_fp32, stock_fp32)]
    # The one difference: transformers 5 nests rope_theta under rope_parameters, which mlx-lm's llama
    # ignores (it falls back to theta=10000); we write the real theta where mlx-lm reads it.
    assert {k for k in config[0].keys() | config[1].keys() if config[0].get(k) != config[1].get(k)} == {"rope_theta"}
    assert config[0]["rope_theta"] == config[0]["rope_parameters"]["rope_theta"] == 100000.0


def test_same_logits_and_greedy_text_as_stock(real_mlx_fp32, stock_fp32):
    import runtime_mlx
    from mlx_lm import generate
    from mlx_lm.utils import load

    ours, tokenizer = runtime_mlx.load(real_mlx_fp32)
    # Give stock the theta its own reader misses (see above), so the comparison is about conversion.
    stock, stock_tok = load(str(stock_fp32), model_config={"rope_theta": 100000.0})
    ids = mx.array([tokenizer.encode(PROMPT)])
    diff = np.abs(np.array(ours(ids)) - np.array(stock(ids))).max()
    assert diff <= 1e-3
    a = generate(ours, tokenizer, PROMPT, max_tokens=32)
    b = generate(stock, stock_tok, PROMPT, max_tokens=32)
    assert a == b and len(tokenizer.encode(a)) >= 16


def test_logits_match_torch(real_model, real_mlx_fp32):
    from convert import verify_conversion

    report = verify_conversion(real_model, real_mlx_fp32, prompts=[PROMPT])
    assert report["ok"] and report["max_abs_diff"] <= 1e-3 and report["top1_agreement"] == 1.0


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_peak_memory_well_under_model_size(real_model, tmp_path, dtype):
    """Streaming: a torch-free conversion process peaks near the largest tensor (113 MB), not the model."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the (large) forking pytest process.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from convert import convert_to_mlx\n"
            f"convert_to_mlx({str(real_model)!r}, {str(tmp_path / 'out')!r}, dtype={dtype!r})\n"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split()[-1]) * 1024  # kB on Linux
    model_bytes = (real_model / "model.safetensors").stat().st_size
    assert peak < 0.5 * model_bytes, f"peak RSS {peak / 2**20:.0f} MiB vs model {model_bytes / 2**20:.0f} MiB"
