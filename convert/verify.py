"""``--verify``: run the source checkpoint (torch, fp32) and the converted folder (MLX) on the same
prompts and compare their logits.

Tolerances are per output format and were measured on SmolLM2-135M (30 layers),
so a correct conversion passes with margin and a wrong name, transpose, rope or
head order (which moves logits by whole units) fails:

- float32: max |logit diff| <= 1e-3 (measured ~1e-4: only the summation order differs)
- float16 / bfloat16: max |logit diff| <= 0.25 / 2.0 (measured 0.08 / 0.91: rounding of every
  weight and activation)
- quantized: top-1 agreement >= 0.85 (8-bit, measured 0.95) / 0.25 (4-bit, measured 0.43 on a model
  that was itself dequantized from Q4_1); quantization moves logits by whole units, so only the argmax
  is a meaningful check there, and a weak one at 4 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sentinel.atomic import read_json
from sentinel.config import text_config
from sentinel.errors import SentinelError

PROMPTS = ("The capital of France is",
           "def fibonacci(n):\n    ",
           "Pruning attention heads makes a language model")
MAX_DIFF = {"float32": 1e-3, "float16": 0.25, "bfloat16": 2.0}
MIN_TOP1 = {8: 0.85, 4: 0.25}


def verify_conversion(src, out, prompts=None) -> dict[str, Any]:
    """Logit agreement of ``out`` (MLX) with ``src`` (torch fp32); ``ok`` says whether it is in tolerance."""
    torch = require_torch()
    import mlx.core as mx

    from forge_cuda.checkpoint import load_model as load_torch
    from runtime_mlx import load_model as load_mlx

    src, out = Path(src), Path(out)
    config = read_json(out / "config.json")
    dtype = _stored_dtype(out)
    bits = (config.get("quantization") or {}).get("bits")
    reference = load_torch(src, dtype=torch.float32)
    converted = load_mlx(out)
    worst, agree, total = 0.0, 0, 0
    for ids in _prompt_ids(src, config, prompts):
        with torch.no_grad():
            want = reference(torch.tensor([ids])).logits[0].float().numpy()
        got = np.array(converted(mx.array([ids]))[0].astype(mx.float32))
        worst = max(worst, float(np.abs(got - want).max()))
        agree += int((got.argmax(-1) == want.argmax(-1)).sum())
        total += len(ids)
    result = {"dtype": dtype, "bits": bits, "prompts": len(prompts or PROMPTS), "tokens": total,
              "max_abs_diff": worst, "top1_agreement": agree / total}
    if bits:
        result["min_top1"] = MIN_TOP1.get(bits, 0.0)
        result["ok"] = result["top1_agreement"] >= result["min_top1"]
    else:
        result["max_diff_allowed"] = MAX_DIFF[dtype]
        result["ok"] = worst <= MAX_DIFF[dtype]
    return result


def require_torch():
    """torch, or a one-line error: the source checkpoint can only run in torch."""
    try:
        import torch
    except ImportError:
        raise SentinelError("--verify needs torch to run the source checkpoint; install torch or drop --verify") from None
    return torch


def _stored_dtype(out: Path) -> str:
    """The float dtype the folder was written in (quantization scales carry it too)."""
    import mlx.core as mx

    names = {mx.float32: "float32", mx.float16: "float16", mx.bfloat16: "bfloat16"}
    index = read_json(out / "model.safetensors.index.json")
    for file in sorted(set(index["weight_map"].values())):
        for name, tensor in mx.load(str(out / file)).items():  # lazy: only headers are read
            if tensor.dtype in names and not name.endswith("A_log"):
                return names[tensor.dtype]
    raise SentinelError(f"{out} holds no floating-point tensors")


def _prompt_ids(src: Path, config: dict, prompts) -> list[list[int]]:
    """Tokenized prompts; tiny test checkpoints without a tokenizer get fixed pseudo-random ids."""
    if (src / "tokenizer.json").is_file() or (src / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src)
        return [tok(p)["input_ids"] for p in (prompts or PROMPTS)]
    vocab = int(config.get("vocab_size") or text_config(config)["vocab_size"])
    rng = np.random.default_rng(0)
    return [rng.integers(0, vocab, size=12).tolist() for _ in (prompts or PROMPTS)]
