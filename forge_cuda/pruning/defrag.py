"""Defrag: physically remove heads and MLP channels so each layer keeps only what its layout lists.

Unlike masking, this shrinks the q/k/v/o and gate/up/down matrices (and frees their
memory), and records the new per-layer layout on ``model.config`` so a save writes it.
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


def _positions(now: tuple[int, ...], want: tuple[int, ...], layer: int, what: str) -> list[int]:
    """Physical positions of the wanted ids in the current order; only removal is allowed."""
    pos = {h: p for p, h in enumerate(now)}
    missing = [h for h in want if h not in pos]
    if missing:
        raise LayoutError(f"layer {layer}: {what} {missing[0]} was already removed; defrag only removes")
    return [pos[h] for h in want]


def defrag(model: nn.Module, target: HeadLayout) -> HeadLayout:
    """Slice every layer down to ``target``, which must be a subset of the current layout."""
    target.validate()
    current = model_layout(model)
    family = family_for(model.config.model_type)
    prunable = set(family.attention_layers(model))
    with_mlp = set(family.mlp_layers(model))
    for i in range(len(target.layers)):
        now_ch, want_ch = current.channels(i), target.channels(i)
        if now_ch == want_ch:
            continue
        if i not in with_mlp:
            raise LayoutError(f"layer {i} has no prunable MLP ({model.config.model_type})")
        family.select_mlp(family.mlp(model, i), _positions(now_ch, want_ch, i, "MLP channel"))
    for i, (now, want) in enumerate(zip(current.layers, target.layers)):
        if (now.q_heads, now.kv_heads, now.clone_of) == (want.q_heads, want.kv_heads, want.clone_of):
            continue
        if i not in prunable:
            raise LayoutError(f"layer {i} has no prunable attention heads ({model.config.model_type})")
        family.select(family.attention(model, i), _positions(now.q_heads, want.q_heads, i, "head"),
                      _positions(now.kv_heads, want.kv_heads, i, "head"))
    set_model_layout(model, target)
    return target
