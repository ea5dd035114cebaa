"""Do a folder's weights agree with its config.json and head layout? Answered from the safetensors headers.

``plan`` and ``card`` describe a model without loading it, so a folder whose
weights belong to another model (or to no model: none at all) would get a
confident plan or card. This check reads only the headers and compares what
the config and layout imply (layer count, hidden size, vocabulary rows, query /
KV rows per layer, MLP width per layer) with what is stored. Names are matched
by their HF/MLX suffixes, so it works on HF folders, MLX folders and quantized
MLX folders (packed matrices are compared on their output rows only: their
input dimension is packed). Pure Python: no torch, no mlx.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from sentinel.config import text_config
from sentinel.errors import SentinelError
from sentinel.remote_code import base_model_type

LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.(.+)$")
# suffix -> (which count gives the rows, which gives the input columns)
ROWS = {"self_attn.q_proj.weight": "q", "self_attn.k_proj.weight": "kv", "self_attn.v_proj.weight": "kv",
        "self_attn.o_proj.weight": "hidden", "mlp.gate_proj.weight": "mlp", "mlp.up_proj.weight": "mlp",
        "mlp.down_proj.weight": "hidden", "input_layernorm.weight": "hidden",
        "post_attention_layernorm.weight": "hidden"}
COLS = {"self_attn.q_proj.weight": "hidden", "self_attn.k_proj.weight": "hidden",
        "self_attn.v_proj.weight": "hidden", "self_attn.o_proj.weight": "q", "mlp.gate_proj.weight": "hidden",
        "mlp.up_proj.weight": "hidden", "mlp.down_proj.weight": "mlp"}
# Families whose attention tensors have the plain llama shapes (qwen3_5's gated q_proj has twice the rows).
PLAIN_ATTENTION = ("llama", "mistral", "qwen2", "qwen3")


def _headers(folder: Path) -> dict[str, tuple[str, list[int]]]:
    from sentinel.validate import check_weights
    from sentinel.weights import read_header

    tensors: dict[str, tuple[str, list[int]]] = {}
    for file in check_weights(folder, required=True):
        tensors.update(read_header(file))
    return tensors


def _expected(layout, cfg: Mapping[str, Any], i: int, what: str) -> int | None:
    hd, base = layout.base.head_dim, layout.base
    layer = layout.layers[i]
    return {"q": layer.num_heads * hd, "kv": layer.num_kv_heads * hd, "hidden": base.hidden_size,
            "mlp": layout.mlp_widths[i]}[what]


def check_weights_match(folder: str | Path, config: Mapping[str, Any]) -> None:
    """Refuse (one SentinelError) a folder with no weights, or whose weights disagree with config + layout."""
    from sentinel.layout import read_layout

    folder = Path(folder)
    tensors = _headers(folder)
    cfg = text_config(config)
    layout = read_layout(config)
    n_layers = layout.base.num_layers
    seen: set[int] = set()
    family = {base_model_type(cfg.get("model_type")), base_model_type(config.get("model_type"))}
    plain = bool(family & set(PLAIN_ATTENTION))
    for name, (dtype, shape) in tensors.items():
        found = LAYER.search(name)
        if found is None:
            _check_global(folder, name, shape, cfg, layout)
            continue
        i, suffix = int(found.group(1)), found.group(2)
        if i >= n_layers:
            raise SentinelError(f"{folder}: tensor {name} is for layer {i}, but config.json has {n_layers} layers")
        seen.add(i)
        if not plain or suffix not in ROWS:
            continue
        packed = f"{name[: -len('.weight')]}.scales" in tensors
        _compare(folder, name, 0, shape, _expected(layout, cfg, i, ROWS[suffix]))
        if suffix in COLS and not packed:
            _compare(folder, name, 1, shape, _expected(layout, cfg, i, COLS[suffix]))
    missing = sorted(set(range(n_layers)) - seen)
    if missing:
        raise SentinelError(f"{folder}: config.json has {n_layers} layers but the weights hold no tensor of "
                            f"layer {missing[0]} ({len(missing)} layers missing)")


def _check_global(folder: Path, name: str, shape: list[int], cfg: Mapping[str, Any], layout) -> None:
    vocab = cfg.get("vocab_size")
    if name.endswith(("embed_tokens.weight", "wte.weight", "lm_head.weight")):
        _compare(folder, name, 0, shape, vocab)
    elif name.endswith(("model.norm.weight", "ln_f.weight")):
        _compare(folder, name, 0, shape, layout.base.hidden_size)


def _compare(folder: Path, name: str, dim: int, shape: list[int], want: int | None) -> None:
    if want is None:
        return
    if len(shape) <= dim or shape[dim] != want:
        raise SentinelError(f"{folder}: tensor {name} has shape {tuple(shape)}, but config.json and its layout "
                            f"imply {want} along dimension {dim}; the weights do not belong to this config")
