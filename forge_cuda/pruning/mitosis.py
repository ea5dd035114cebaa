"""Head mitosis: regrow capacity by cloning important heads, without changing the function.

A clone copies its parent's query rows (and q bias / output-gate rows where the
family has them) and reads the same KV head, so both copies compute the same
head output; the parent's o_proj columns are split between them (``split`` and
``1 - split``), so their sum is the parent's old contribution. With split=0.5
the two copies receive proportional gradients and stay parallel; a split other
than 0.5 keeps the function and lets training tell them apart.

Format rule 6 (equal group sizes) means one round of mitosis adds exactly one
clone to EVERY kept KV group of the layer.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from forge_cuda.families import family_for
from forge_cuda.pruning.defrag import model_layout, set_model_layout
from forge_cuda.pruning.importance import UnitScores
from forge_cuda.pruning.space import kv_groups
from sentinel.errors import LayoutError
from sentinel.layout import HeadLayout, LayerHeads


def _fresh_ids(layout: HeadLayout, layer: LayerHeads, n: int) -> list[int]:
    taken = set(layer.q_heads) | set(layer.clone_of)
    ids, candidate = [], layout.base.num_heads
    while len(ids) < n:
        if candidate not in taken:
            ids.append(candidate)
        candidate += 1
    return ids


def clone_heads(model: nn.Module, index: int, parents: Sequence[int], split: float = 0.5,
                allow_growth: bool = False) -> HeadLayout:
    """Clone the given query heads (ids, as listed in the layout) of one layer, in place.

    ``allow_growth`` permits more query heads than the base model had in this layer
    (by default clones only fill capacity that pruning freed).
    """
    if not 0.0 < split < 1.0:
        raise LayoutError(f"split must be in (0, 1), got {split}")
    family = family_for(model.config.model_type)
    if not getattr(family, "supports_gqa", True):
        raise LayoutError(f"{model.config.model_type} has one KV head per query head; "
                          "a clone would need its own KV head, which format v1 cannot record")
    if index not in family.attention_layers(model):
        raise LayoutError(f"layer {index} has no prunable attention heads")
    layout = model_layout(model)
    layer = layout.layers[index]
    where = f"layer {index}"
    parents = list(parents)
    unknown = [p for p in parents if p not in layer.q_heads]
    if unknown:
        raise LayoutError(f"{where}: head {unknown[0]} is not kept, so it cannot be cloned")
    if len(set(parents)) != len(parents):
        raise LayoutError(f"{where}: a head can be cloned once per call")
    room = layout.base.num_heads - layer.num_heads
    if not allow_growth and len(parents) > room:
        raise LayoutError(f"{where}: {len(parents)} clones but only {room} heads of freed capacity")
    ordered = [h for h in layer.q_heads if h in set(parents)]  # ids follow physical order, not call order
    new_ids = dict(zip(ordered, _fresh_ids(layout, layer, len(parents))))
    positions, q_heads, scale = [], [], []
    for group in kv_groups(layout, layer):
        for p in group:
            h = layer.q_heads[p]
            positions.append(p)
            q_heads.append(h)
            scale.append(split if h in new_ids else 1.0)
            if h in new_ids:
                positions.append(p)
                q_heads.append(new_ids[h])
                scale.append(1.0 - split)
    clone_of = dict(layer.clone_of)
    clone_of.update({c: layer.origin(h) for h, c in new_ids.items()})
    target = layout.replace_layer(index, LayerHeads(tuple(q_heads), layer.kv_heads, clone_of, layer.mlp_channels))
    try:
        target.validate()
    except LayoutError as e:
        raise LayoutError(f"{e} (one round of mitosis clones one head in every kept KV group)") from None
    family.select(family.attention(model, index), positions, list(range(layer.num_kv_heads)), o_scale=scale)
    set_model_layout(model, target)
    return target


def plan_mitosis(scores: UnitScores, max_rounds: int = 1) -> dict[int, list[int]]:
    """Per layer, the best-scoring head of every kept KV group, for as many rounds as freed capacity allows."""
    layout = scores.layout
    plan = {}
    for i, s in scores.layers.items():
        layer = layout.layers[i]
        groups = kv_groups(layout, layer)
        rounds = min(max_rounds, (layout.base.num_heads - layer.num_heads) // len(groups), len(groups[0]))
        if rounds <= 0:
            continue
        ranked = [sorted(g, key=lambda p: -s[p])[:rounds] for g in groups]
        plan[i] = [layer.q_heads[p] for r in range(rounds) for g in ranked for p in [g[r]]]
    return plan


def apply_mitosis(model: nn.Module, plan: Mapping[int, Sequence[int]], split: float = 0.5) -> HeadLayout:
    """Clone every head a plan lists (one round per group layer by layer); returns the new layout."""
    layout = model_layout(model)
    for i, parents in sorted(plan.items()):
        layout = clone_heads(model, i, parents, split=split)
    return layout
