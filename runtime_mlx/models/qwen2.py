"""Qwen2 with per-layer head counts: biased q/k/v, unbiased o_proj, rope_theta 1e6 by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runtime_mlx.models.decoder import DecoderArgs, Model  # noqa: F401  (mlx-lm looks up Model here)


@dataclass
class ModelArgs(DecoderArgs):
    default_rope_theta: ClassVar[float] = 1000000.0

    @property
    def qkv_bias(self) -> bool:
        return True
