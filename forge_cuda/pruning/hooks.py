"""Unit readers: hooks on the input of the layer that reads each prunable unit.

A head's whole effect on the residual stream goes through its slice of the
o_proj input (the seed hooked the output side, where heads are already mixed),
and a channel's through its down_proj input, so one pre-hook there sees (and may
replace) exactly one unit's contribution. Importance, refit and the tests' masks
all measure through ``hook_units``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from forge_cuda.families import family_for

HeadFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def hook_units(model: nn.Module, fn: HeadFn, kind: str = "heads") -> list:
    """Call ``fn(layer, units)`` on every prunable layer's unit input viewed as [..., units, width].

    Heads: the o_proj input as [..., heads, head_dim]; channels: the down_proj input
    (the intermediate activation) as [..., channels, 1]. ``fn`` may return a
    replacement tensor of the same shape. Returns the hook handles.
    """
    family = family_for(model.config.model_type)
    handles = []
    for i in family.unit_layers(model, kind):
        width = family.unit_width(model, i, kind)

        def pre_hook(module, args, i=i, width=width):
            x = args[0]
            out = fn(i, x.view(*x.shape[:-1], -1, width))
            return None if out is None else (out.reshape(x.shape), *args[1:])

        handles.append(family.unit_reader(model, i, kind).register_forward_pre_hook(pre_hook))
    return handles


def hook_head_outputs(model: nn.Module, fn: HeadFn) -> list:
    """``hook_units`` for attention heads (the o_proj input as [..., heads, head_dim])."""
    return hook_units(model, fn, "heads")
