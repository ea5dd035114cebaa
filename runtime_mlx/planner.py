"""Predict a model's peak memory and decode speed on a target before running (or downloading) it.

peak = weights + KV cache at the context + prefill activations + runtime overhead.

- weights: exact byte sizes from the safetensors headers when the folder has
  them (no tensor data is read), else counted from config.json (per-layer heads
  from the ``sentinel_layout`` block) at the stored or requested dtype/bits.
- KV cache: mlx-lm's ``KVCache`` grows in steps of 256 tokens; every layer keeps
  its own KV head count, so bytes/token = sum over layers of 2 * kv_heads * head_dim * dtype.
  The peak is taken at the worst moment: a prefill chunk (the cache so far plus
  its activations) or the last decode step (the whole cache).
- activations: the largest live set while mlx-lm prefills one chunk of
  ``prefill_step`` tokens: the residual stream, then either attention or the MLP
  (gate, up, product). On the CPU backend MLX's attention materialises the
  scores (chunk x context per query head, model dtype) and a float32 causal
  mask; on Metal the fused attention kernel (head_dim 64/80/128) does not, so
  only q/k/v count there. The CPU terms were fitted against measured peaks
  (bench/planner_error.py reports the error); the Metal terms are not measured.
- overhead: the sampler's float32 logits (MLX's peak counts only its own
  buffers; measured allocator overhead on CPU is below 1 MB).

Decode speed is bandwidth-bound: every weight byte and the whole KV cache are
read once per token, so bandwidth / bytes-per-token is an *upper bound*.
Pure Python (JSON + safetensors headers): runs without MLX or torch.
"""

from __future__ import annotations

import glob
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from sentinel.errors import SentinelError
from sentinel.config import text_config
from sentinel.layout import read_layout

KV_STEP = 256  # mlx_lm.models.cache.KVCache.step
PREFILL_STEP = 2048  # mlx_lm.generate.generate_step's prefill_step_size
MASK_BYTES = 4  # MLX's CPU attention builds a float32 chunk x context causal mask
FUSED_HEAD_DIMS = (64, 80, 128)  # MLX Metal's fused (flash) attention; other head dims fall back
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
NAMED_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


@dataclass(frozen=True)
class ModelFacts:
    """What the planner needs to know about a model, and where it learnt it."""

    name: str
    source: str  # "safetensors headers" | "config.json"
    dtype: str  # activation / KV cache dtype (F32, F16, BF16)
    bits: Optional[int]  # weight quantization, None when dense
    weight_bytes: int
    kv_bytes_per_token: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_q_heads: int
    max_kv_heads: int
    head_dim: int

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_config(model: str | Path) -> tuple[dict, Optional[Path]]:
    """config.json of a folder (or the file itself), validated; the folder is returned when there is one.

    A folder must hold weights that agree with its config and layout (sentinel.weight_check);
    to plan from a config alone, give the config.json file."""
    from runtime_mlx.models import FAMILIES
    from sentinel.validate import check_config, check_model_folder, read_config as read_folder_config
    from sentinel.weight_check import check_weights_match

    path = Path(model).expanduser()
    if path.is_dir():
        config = check_model_folder(path, FAMILIES, weights_required=False).config
        if not glob.glob(str(path / "*.safetensors")) and not (path / "model.safetensors.index.json").exists():
            raise SentinelError(f"{path} has no safetensors weights; to plan from the config alone, give "
                                f"{path / 'config.json'}")
        check_weights_match(path, config)  # headers only: weights of another model get no confident plan
        return config, path
    if not path.is_file():
        raise SentinelError(f"{path} not found (give a model folder or its config.json)")
    if path.suffix == ".gguf":
        raise SentinelError(f"{path} is a GGUF file; plan reads a model folder or its config.json "
                            "(measure a GGUF with `sentinel verify`)")
    config = read_folder_config(path)
    check_config(config, str(path), FAMILIES)
    return config, None


def safetensors_headers(folder: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) for every tensor of the folder's weights, reading only the headers;
    empty when the folder holds no weights yet (config.json alone)."""
    from sentinel.weights import read_header, weight_files

    if not glob.glob(str(folder / "*.safetensors")) and not (folder / "model.safetensors.index.json").exists():
        return {}
    tensors: dict[str, tuple[str, list[int]]] = {}
    for file in weight_files(folder):
        tensors.update(read_header(file))
    return tensors


def config_tensors(config: Mapping[str, Any], dtype: str) -> dict[str, tuple[str, list[int]]]:
    """The tensors a model of this config holds, for when there are no weights yet: the family's
    one description (runtime_mlx/shapes.py), the same the converter writes by."""
    from runtime_mlx.shapes import tensor_shapes

    return {name: (dtype, list(shape)) for name, shape in tensor_shapes(config, read_layout(config)).items()}


def _nbytes(dtype: str, shape: list[int]) -> int:
    return math.prod(shape) * DTYPE_BYTES.get(dtype, 4)


def _quantized_bytes(tensors: Mapping[str, tuple[str, list[int]]], bits: int, group_size: int) -> int:
    """Bytes after MLX affine quantization: matrices whose input dim the group divides get packed
    weights plus one scale and one bias per group (in the float dtype); the rest stay dense."""
    total = 0
    for dtype, shape in tensors.values():
        if len(shape) == 2 and shape[-1] % group_size == 0:
            n = math.prod(shape)
            total += n * bits // 8 + 2 * (n // group_size) * DTYPE_BYTES[dtype]
        else:
            total += _nbytes(dtype, shape)
    return total


def model_facts(model: str | Path, dtype: Optional[str] = None, quantize: Optional[int] = None,
                group_size: int = 64) -> ModelFacts:
    """Facts of a folder (or config.json) as stored, or as ``sentinel convert`` would write it with
    ``dtype``/``quantize`` (then weights are counted from the headers' shapes or the config)."""
    config, folder = read_config(model)
    cfg = text_config(config)
    layout = read_layout(config)
    base = layout.base
    headers = safetensors_headers(folder) if folder is not None else {}
    qcfg = config.get("quantization") or {}
    if dtype is not None and dtype not in NAMED_DTYPES:
        raise SentinelError(f"dtype {dtype!r} not supported; choose from {', '.join(NAMED_DTYPES)}")
    if headers and dtype is None and quantize is None:
        floats = Counter(d for d, _ in headers.values() if d in ("F32", "F16", "BF16"))
        if not floats:
            raise SentinelError(f"{folder}: no floating-point tensors in its safetensors files")
        act = floats.most_common(1)[0][0]
        weight_bytes = sum(_nbytes(d, s) for d, s in headers.values())
        bits = qcfg.get("bits")
        source = "safetensors headers"
    else:
        stored = NAMED_DTYPES.get(str(cfg.get("dtype") or cfg.get("torch_dtype") or ""), "F16")
        act = NAMED_DTYPES[dtype] if dtype else stored
        if headers:  # shapes from the real tensors, bytes at the requested format
            shapes = {n: (act, s) for n, (d, s) in headers.items() if d in ("F32", "F16", "BF16")}
            if len(shapes) != len(headers):
                raise SentinelError(f"{folder} is already quantized: plan it as stored (no --dtype/--quantize)")
            source = "safetensors headers (shapes) at the requested format"
        else:
            shapes = config_tensors(config, act)
            source = "config.json"
        bits = quantize if quantize is not None else (qcfg.get("bits") if not headers else None)
        gs = group_size if quantize is not None else int(qcfg.get("group_size", group_size))
        weight_bytes = _quantized_bytes(shapes, int(bits), gs) if bits else sum(
            _nbytes(d, s) for d, s in shapes.values())
    kv = sum(2 * layer.num_kv_heads * base.head_dim for layer in layout.layers) * DTYPE_BYTES[act]
    inter = max((len(l.mlp_channels) for l in layout.layers if l.mlp_channels is not None),
                default=base.intermediate_size or 4 * base.hidden_size)
    return ModelFacts(name=(folder or Path(model).parent).name, source=source, dtype=act,
                      bits=int(bits) if bits else None, weight_bytes=int(weight_bytes), kv_bytes_per_token=kv,
                      num_layers=base.num_layers, hidden_size=base.hidden_size, intermediate_size=int(inter),
                      vocab_size=int(cfg.get("vocab_size", 0)), max_q_heads=max(layout.q_counts),
                      max_kv_heads=max(layout.kv_counts), head_dim=base.head_dim)


def kv_cache_bytes(facts: ModelFacts, context: int) -> int:
    """What mlx-lm's KVCache holds after ``context`` tokens (allocated in 256-token steps)."""
    return math.ceil(context / KV_STEP) * KV_STEP * facts.kv_bytes_per_token


def prefill_chunks(prompt: int, prefill_step: int = PREFILL_STEP) -> list[tuple[int, int]]:
    """(chunk tokens, context after the chunk) as mlx-lm's generate_step prefills a prompt:
    chunks of ``prefill_step`` until one token is left, then that token with the first decode step."""
    chunks, done = [], 0
    while prompt - done > 1:
        n = min(prefill_step, prompt - done - 1)
        done += n
        chunks.append((n, done))
    chunks.append((1, prompt))
    return chunks


def step_activation_bytes(facts: ModelFacts, n: int, context: int, backend: str = "metal") -> int:
    """The largest live set inside one layer while ``n`` new tokens attend to ``context`` tokens."""
    if backend not in ("cpu", "metal"):
        raise SentinelError(f"backend {backend!r} must be cpu or metal")
    a = facts.act_bytes
    residual = 2 * n * facts.hidden_size * a
    attention = n * (2 * facts.max_q_heads + 4 * facts.max_kv_heads) * facts.head_dim * a
    if backend == "cpu" or facts.head_dim not in FUSED_HEAD_DIMS:
        attention += facts.max_q_heads * n * context * a + n * context * MASK_BYTES
    mlp = 3 * n * facts.intermediate_size * a
    return residual + max(attention, mlp)


def predict_peak(facts: ModelFacts, context: int, backend: str = "metal", prompt: Optional[int] = None,
                 prefill_step: int = PREFILL_STEP) -> dict[str, int]:
    """Peak memory with ``context`` tokens in the cache at the end, by component, at the worst moment:
    a prefill chunk (its activations + the cache so far) or the last decode step (the full cache).
    The prompt defaults to the whole context, the worst case; verify passes its real prompt length."""
    prompt = context if prompt is None else min(prompt, context)
    phases = [(kv_cache_bytes(facts, end), step_activation_bytes(facts, n, end, backend))
              for n, end in prefill_chunks(prompt, prefill_step)]
    phases.append((kv_cache_bytes(facts, context), step_activation_bytes(facts, 1, context, backend)))
    kv, act = max(phases, key=sum)
    parts = {"weights": facts.weight_bytes, "kv_cache": kv, "activations": act,
             "overhead": 2 * facts.vocab_size * 4}
    parts["total"] = sum(parts.values())
    return parts


def decode_bytes_per_token(facts: ModelFacts, context: int) -> int:
    return facts.weight_bytes + facts.kv_bytes_per_token * context


def decode_tps_bound(facts: ModelFacts, context: int, bandwidth_gbs: float) -> float:
    """Upper bound on decode tokens/s: memory bandwidth / bytes read per token (estimated)."""
    return bandwidth_gbs * 1e9 / decode_bytes_per_token(facts, context)


def fit(facts: ModelFacts, target, context: int) -> dict[str, Any]:
    """Predicted peak (Metal) against the target's usable working set: fits?, margin, decode bound."""
    peak = predict_peak(facts, context, "metal")
    margin = target.working_set_bytes - peak["total"]
    return {"context": context, "predicted_peak_bytes": peak["total"], "components": peak,
            "working_set_bytes": target.working_set_bytes, "fits": margin >= 0, "margin_bytes": margin,
            "decode_tps_upper_bound": decode_tps_bound(facts, context, target.bandwidth_gbs)}


def plan(model: str | Path, targets: list, contexts: list[int], dtype: Optional[str] = None,
         quantize: Optional[int] = None, group_size: int = 64) -> dict[str, Any]:
    """The ``sentinel plan`` report: one fit per target and context, all labelled estimated."""
    from sentinel.config import MAX_CONTEXT

    if not contexts or any(not 0 < c <= MAX_CONTEXT for c in contexts):
        raise SentinelError(f"contexts must be token counts between 1 and {MAX_CONTEXT:,}")
    facts = model_facts(model, dtype, quantize, group_size)
    return {"model": str(model), "facts": facts.to_dict(), "status": "estimated",
            "targets": [{"target": t.to_dict(), "fits": [fit(facts, t, c) for c in contexts]} for t in targets]}
