"""Defrag: physically remove heads so each layer keeps only what its layout lists.

Unlike masking, this shrinks the q/k/v/o matrices (and frees their memory), and
records the new per-layer layout on ``model.config`` so a save writes it.
"""

from __future__ import annotations

from torch import nn

from forge_cuda.families import family_for
from sentinel.errors import LayoutError
from sentinel.layout import LAYOUT_KEY, HeadLayout, read_layout


def model_layout(model: nn.Module) -> HeadLayout:
    """The layout a loaded model currently has (full when never pruned)."""
    return read_layout(model.config.to_dict())


def set_model_layout(model: nn.Module, layout: HeadLayout) -> None:
    setattr(model.config, LAYOUT_KEY, layout.validate().to_dict())


def defrag(model: nn.Module, target: HeadLayout) -> HeadLayout:
    """Slice every layer down to ``target``, which must be a subset of the current layout."""
    target.validate()
    current = model_layout(model)
    family = family_for(model.config.model_type)
    prunable = set(family.attention_layers(model))
    for i, (now, want) in enumerate(zip(current.layers, target.layers)):
        if now == want:
            continue
        if i not in prunable:
            raise LayoutError(f"layer {i} has no prunable attention heads ({model.config.model_type})")
        q_pos = {h: p for p, h in enumerate(now.q_heads)}
        kv_pos = {h: p for p, h in enumerate(now.kv_heads)}
        missing = [h for h in want.q_heads if h not in q_pos] + [h for h in want.kv_heads if h not in kv_pos]
        if missing:
            raise LayoutError(f"layer {i}: head {missing[0]} was already removed; defrag only removes heads")
        family.select(family.attention(model, i), [q_pos[h] for h in want.q_heads],
                      [kv_pos[h] for h in want.kv_heads])
    set_model_layout(model, target)
    return target
