"""Qwen3.5 with per-layer heads in its gated full-attention layers.

Everything else is mlx-lm's own qwen3_5: the gated DeltaNet (linear-attention)
layers, MLPs, caches and sanitize. Only a pruned full-attention layer gets its
attention rebuilt, with mlx-lm's own attention class fed that layer's head
counts, and only a pruned (dense) MLP gets mlx-lm's own MLP at its own width,
so the forward code stays stock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional

from mlx_lm.models import qwen3_5 as stock
from mlx_lm.models.qwen3_next import Qwen3NextAttention, Qwen3NextMLP

from sentinel.layout import read_layout


@dataclass
class ModelArgs(stock.ModelArgs):
    layer_heads: Optional[List[int]] = None
    layer_kv_heads: Optional[List[int]] = None
    layer_intermediate: Optional[List[Optional[int]]] = None

    @classmethod
    def from_dict(cls, params):
        args = super().from_dict(params)
        layout = read_layout(params)  # reads text_config's geometry; linear layers keep full entries
        args.layer_heads, args.layer_kv_heads = layout.q_counts, layout.kv_counts
        args.layer_intermediate = [len(l.mlp_channels) if l.mlp_channels is not None else None
                                   for l in layout.layers]
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
