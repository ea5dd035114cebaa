"""Tensor surgery on projection layers: keep, repeat or rescale rows and columns.

nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out]. Every family's ``select``
(defrag and mitosis alike) and ``select_mlp`` are built from these few functions.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn


def head_rows(heads: Iterable[int], head_dim: int, device=None) -> torch.Tensor:
    """Row indices of the given physical heads in a projection laid out head by head."""
    heads = torch.as_tensor(list(heads), dtype=torch.long, device=device)
    offsets = torch.arange(head_dim, device=device)
    return (heads[:, None] * head_dim + offsets[None, :]).reshape(-1)


def new_linear(in_features: int, out_features: int, like: nn.Linear, bias: bool | None = None) -> nn.Linear:
    """An uninitialised Linear on ``like``'s device and dtype."""
    bias = like.bias is not None if bias is None else bias
    return nn.Linear(in_features, out_features, bias=bias,
                     device=like.weight.device, dtype=like.weight.dtype)


def col_scale(o_scale: Sequence[float] | None, head_dim: int, like: torch.Tensor) -> torch.Tensor | None:
    """Per-column multipliers for o_proj inputs from per-head scales (mitosis splits a head's output)."""
    if o_scale is None:
        return None
    scale = torch.as_tensor(list(o_scale), dtype=like.dtype, device=like.device)
    return scale.repeat_interleave(head_dim)


def slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None,
                 cols: torch.Tensor | None = None, col_scale: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding only the given output rows / input columns (copies, frees the rest).

    Indices may repeat (mitosis); ``col_scale`` multiplies the kept input columns.
    """
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight.index_select(0, rows.to(weight.device))
    if cols is not None:
        weight = weight.index_select(1, cols.to(weight.device))
    if col_scale is not None:
        weight = weight * col_scale[None, :]
    out = new_linear(weight.shape[1], weight.shape[0], linear)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            out.bias.copy_(bias.index_select(0, rows.to(bias.device)) if rows is not None else bias)
    out.weight.requires_grad_(linear.weight.requires_grad)
    return out


def conv1d_like(nx: int, nf: int, like: nn.Module) -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(nf, nx)
    return conv.to(device=like.weight.device, dtype=like.weight.dtype)


def slice_conv1d(conv: nn.Module, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None,
                  in_scale: torch.Tensor | None = None) -> nn.Module:
    """Conv1D stores weight as [in, out]: outputs are columns, inputs are rows."""
    weight = conv.weight.detach()
    bias = conv.bias.detach()
    if out_idx is not None:
        weight = weight.index_select(1, out_idx.to(weight.device))
        bias = bias.index_select(0, out_idx.to(bias.device))
    if in_idx is not None:
        weight = weight.index_select(0, in_idx.to(weight.device))
    if in_scale is not None:
        weight = weight * in_scale[:, None]
    out = conv1d_like(weight.shape[0], weight.shape[1], conv)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    out.weight.requires_grad_(conv.weight.requires_grad)
    return out
