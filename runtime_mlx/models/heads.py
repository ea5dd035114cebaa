"""Per-layer head counts for MLX model args, read from the ``sentinel_layout`` block.

mlx-lm builds every model from ``ModelArgs.from_dict(config)``; ours add the
per-layer lists there, so the rest of mlx-lm never needs to know a model was pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from mlx_lm.models.base import BaseModelArgs

from sentinel.errors import LayoutError
from sentinel.layout import read_layout


@dataclass(kw_only=True)  # keyword-only, so families can still declare required fields
class PerLayerArgs(BaseModelArgs):
    """Mixin fields: query heads, KV heads and MLP width of every layer (None = uniform)."""

    layer_heads: Optional[List[int]] = None
    layer_kv_heads: Optional[List[int]] = None
    layer_intermediate: Optional[List[Optional[int]]] = None

    @classmethod
    def from_dict(cls, params):
        args = super().from_dict(params)
        if params.get("layer_heads") is None:
            layout = read_layout(params)
            args.layer_heads = layout.q_counts
            args.layer_kv_heads = layout.kv_counts
            args.layer_intermediate = [len(l.mlp_channels) if l.mlp_channels is not None else None
                                       for l in layout.layers]
        args.fill_layer_lists()
        return args

    def __post_init__(self):
        self.fill_layer_lists()

    def fill_layer_lists(self) -> None:
        """Uniform lists for args built by hand (no config), then check lengths agree."""
        n = self.num_layers_for_heads()
        if self.layer_heads is None:
            self.layer_heads = [self.base_heads()] * n
        if self.layer_kv_heads is None:
            self.layer_kv_heads = [self.base_kv_heads()] * n
        if self.layer_intermediate is None:
            self.layer_intermediate = [None] * n
        for name in ("layer_heads", "layer_kv_heads", "layer_intermediate"):
            if len(getattr(self, name)) != n:
                raise LayoutError(f"{name} lists {len(getattr(self, name))} layers, the model has {n}")

    # Families name these differently (llama: num_attention_heads, gpt2: n_head).
    def num_layers_for_heads(self) -> int:
        return self.num_hidden_layers

    def base_heads(self) -> int:
        return self.num_attention_heads

    def base_kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads
