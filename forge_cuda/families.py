"""Per-family access to attention projections, so heads can be resized and sliced.

HF attention modules reshape with ``-1`` heads, so for the llama-like families
swapping in smaller q/k/v/o Linear layers and fixing ``num_key_value_groups``
is all a layer needs to run with its own head counts.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from sentinel.errors import SentinelError


def head_rows(heads: Iterable[int], head_dim: int, device=None) -> torch.Tensor:
    """Row indices of the given physical heads in a projection laid out head by head."""
    heads = torch.as_tensor(list(heads), dtype=torch.long, device=device)
    offsets = torch.arange(head_dim, device=device)
    return (heads[:, None] * head_dim + offsets[None, :]).reshape(-1)


def _new_linear(in_features: int, out_features: int, like: nn.Linear, bias: bool | None = None) -> nn.Linear:
    """An uninitialised Linear on ``like``'s device and dtype."""
    bias = like.bias is not None if bias is None else bias
    return nn.Linear(in_features, out_features, bias=bias,
                     device=like.weight.device, dtype=like.weight.dtype)


def slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None,
                 cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding only the given output rows / input columns (copies, frees the rest)."""
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight.index_select(0, rows.to(weight.device))
    if cols is not None:
        weight = weight.index_select(1, cols.to(weight.device))
    out = _new_linear(weight.shape[1], weight.shape[0], linear)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            out.bias.copy_(bias.index_select(0, rows.to(bias.device)) if rows is not None else bias)
    out.weight.requires_grad_(linear.weight.requires_grad)
    return out


class LlamaLikeFamily:
    """llama, mistral, qwen2 (q/k/v bias) and qwen3 (shared per-head-dim q_norm/k_norm).

    qwen3's q_norm/k_norm act on head_dim and are shared by all heads, so they
    need no slicing.
    """

    model_types = ("llama", "mistral", "qwen2", "qwen3")

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_decoder().layers

    def attention(self, model: nn.Module, index: int) -> nn.Module:
        return self.decoder_layers(model)[index].self_attn

    def resize(self, attn: nn.Module, num_heads: int, num_kv_heads: int) -> None:
        """Replace the projections with uninitialised ones of the given head counts."""
        hd = attn.head_dim
        hidden = attn.q_proj.in_features
        attn.q_proj = _new_linear(hidden, num_heads * hd, attn.q_proj)
        attn.k_proj = _new_linear(hidden, num_kv_heads * hd, attn.k_proj)
        attn.v_proj = _new_linear(hidden, num_kv_heads * hd, attn.v_proj)
        attn.o_proj = _new_linear(num_heads * hd, attn.o_proj.out_features, attn.o_proj)
        attn.num_key_value_groups = num_heads // num_kv_heads

    def select(self, attn: nn.Module, q_keep: list[int], kv_keep: list[int]) -> None:
        """Keep only the given physical heads (positions in the current matrices)."""
        hd = attn.head_dim
        q_rows, kv_rows = head_rows(q_keep, hd), head_rows(kv_keep, hd)
        attn.q_proj = slice_linear(attn.q_proj, rows=q_rows)
        attn.k_proj = slice_linear(attn.k_proj, rows=kv_rows)
        attn.v_proj = slice_linear(attn.v_proj, rows=kv_rows)
        attn.o_proj = slice_linear(attn.o_proj, cols=q_rows)
        attn.num_key_value_groups = len(q_keep) // len(kv_keep)

    def o_proj(self, attn: nn.Module) -> nn.Linear:
        """The projection whose input columns are the concatenated head outputs."""
        return attn.o_proj


_FAMILIES = [LlamaLikeFamily()]


def supported_model_types() -> list[str]:
    return sorted(t for family in _FAMILIES for t in family.model_types)


def family_for(model_type: str):
    """The adapter for a model_type, or a one-line error listing the supported ones."""
    for family in _FAMILIES:
        if model_type in family.model_types:
            return family
    raise SentinelError(f"unsupported model_type {model_type!r}; supported: {', '.join(supported_model_types())}")
