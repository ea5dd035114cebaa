"""Qwen3 with per-layer head counts: per-head RMSNorm on queries and keys before RoPE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runtime_mlx.models.decoder import DecoderArgs, Model  # noqa: F401  (mlx-lm looks up Model here)


@dataclass
class ModelArgs(DecoderArgs):
    attention_bias: bool = False
    default_rope_theta: ClassVar[float] = 1000000.0
    qk_norm: ClassVar[bool] = True

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.attention_bias
