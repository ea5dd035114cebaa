"""Qwen3.5 with per-layer heads in its gated full-attention layers.

Everything else is mlx-lm's own qwen3_5: the gated DeltaNet (linear-attention)
layers, MLPs, caches and sanitize. Only a pruned full-attention layer gets its
attention rebuilt, with mlx-lm's own attention class fed that layer's head
counts, and only a pruned (dense) MLP gets mlx-lm's own MLP at its own width,
so the forward code stays stock.

Self-contained (mlx + mlx-lm only): convert copies it into a forged MLX folder as its
``model_file`` for stock mlx-lm tools; the counts block is the same as decoder.py's.
"""


from dataclasses import dataclass, replace
from typing import List, Optional

from mlx_lm.models import qwen3_5 as stock
from mlx_lm.models.qwen3_next import Qwen3NextAttention, Qwen3NextMLP

# --- per-layer counts from config.json's sentinel_layout (same copy in every model file) ---------
LAYOUT_KEY = "sentinel_layout"
READABLE_VERSIONS = (1, 2, 3)


def count_indices(value) -> int:
    """Length of a stored index list: plain ints (v1/v2) or [start, stop) pairs (v3)."""
    if value and all(isinstance(v, (list, tuple)) for v in value):
        return sum(int(stop) - int(start) for start, stop in value)
    return len(value)


def layer_counts(params: dict, n_layers: int):
    """(query heads, KV heads, MLP width or None) lists per layer; None for an unpruned config."""
    block = params.get(LAYOUT_KEY)
    if not block:
        return None
    version = block.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{LAYOUT_KEY} format_version {version!r} is newer than this model file reads")
    layers = block.get("layers") or []
    if len(layers) != n_layers:
        raise ValueError(f"{LAYOUT_KEY} lists {len(layers)} layers, the model has {n_layers}")
    return ([count_indices(l["q_heads"]) for l in layers], [count_indices(l["kv_heads"]) for l in layers],
            [count_indices(l["mlp_channels"]) if l.get("mlp_channels") is not None else None for l in layers])
# --- end of the shared block ---------------------------------------------------------------------


@dataclass
class ModelArgs(stock.ModelArgs):
    layer_heads: Optional[List[int]] = None
    layer_kv_heads: Optional[List[int]] = None
    layer_intermediate: Optional[List[Optional[int]]] = None

    @classmethod
    def from_dict(cls, params):
        args = super().from_dict(params)
        text = params.get("text_config") or params  # the decoder's geometry; linear layers keep full entries
        counts = layer_counts(params, text["num_hidden_layers"])
        if counts is not None:
            args.layer_heads, args.layer_kv_heads, args.layer_intermediate = counts
        return args


class Model(stock.Model):
    def __init__(self, args: ModelArgs):
        super().__init__(args)
        text = self.language_model.args
        heads = args.layer_heads or [text.num_attention_heads] * text.num_hidden_layers
        kv_heads = args.layer_kv_heads or [text.num_key_value_heads] * text.num_hidden_layers
        for layer, q, kv in zip(self.language_model.model.layers, heads, kv_heads):
            if not layer.is_linear and (q, kv) != (text.num_attention_heads, text.num_key_value_heads):
                layer.self_attn = Qwen3NextAttention(replace(text, num_attention_heads=q, num_key_value_heads=kv))
        for layer, width in zip(self.language_model.model.layers, args.layer_intermediate or []):
            if width is not None and width != text.intermediate_size:
                layer.mlp = Qwen3NextMLP(text.hidden_size, width)
