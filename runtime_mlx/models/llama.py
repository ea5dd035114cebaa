"""Llama (and Mistral, which mlx-lm maps onto it) with per-layer head counts."""

from __future__ import annotations

from dataclasses import dataclass

from runtime_mlx.models.decoder import DecoderArgs, Model  # noqa: F401  (mlx-lm looks up Model here)


@dataclass
class ModelArgs(DecoderArgs):
    attention_bias: bool = False
    mlp_bias: bool = False

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.attention_bias

    @property
    def mlp_has_bias(self) -> bool:
        return self.mlp_bias
