"""Choose which heads to remove for a target fraction, always landing on a valid layout.

Format rule 6 says every kept KV head serves the same number m of query heads,
so a layer's only legal shapes are "k KV groups x m query heads". For each
shape the best heads are easy (top-m per group, then the top-k groups); which
shape each layer takes is a small exact knapsack over layers that removes as
close to the requested number of query heads as the shapes allow while keeping
the largest total score.

Modes: ``query`` keeps every KV head (m shrinks), ``group`` removes whole KV
groups with their query heads (k shrinks: the KV cache shrinks too), ``auto``
allows both and so drops a KV head whenever all its query heads go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forge_cuda.importance import UnitScores
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout, LayerHeads

MODES = ("query", "group", "auto")
SCOPES = ("global", "layer")


@dataclass(frozen=True)
class Shape:
    """One legal way to prune a layer: the kept physical positions and their total score."""

    kept: tuple[int, ...]
    kv_kept: tuple[int, ...]
    value: float
    removed: int


@dataclass(frozen=True)
class Selection:
    layout: HeadLayout
    removed: int
    requested: int
    total: int


def _groups(layout: HeadLayout, layer: LayerHeads) -> list[list[int]]:
    """Physical query positions of each kept KV head, in kv_heads order."""
    by_kv = {kv: [] for kv in layer.kv_heads}
    for p, q in enumerate(layer.q_heads):
        by_kv[layout.kv_group(layer, q)].append(p)
    return [by_kv[kv] for kv in layer.kv_heads]


def layer_shapes(layout: HeadLayout, index: int, scores: np.ndarray, mode: str, min_heads: int) -> list[Shape]:
    """Every legal (k groups x m heads) shape of one layer allowed by the mode, with its best heads."""
    layer = layout.layers[index]
    groups = _groups(layout, layer)
    n, k_all, m_all = layer.num_heads, len(groups), len(groups[0])
    floor = min(min_heads, n)
    shapes = []
    for m in range(1, m_all + 1):
        if mode == "group" and m != m_all:
            continue
        # best m members of each group (stable: ties keep the lower position)
        tops = [sorted(sorted(g, key=lambda p: -scores[p])[:m]) for g in groups]
        values = [float(sum(scores[p] for p in t)) for t in tops]
        order = sorted(range(k_all), key=lambda g: -values[g])
        for k in range(1, k_all + 1):
            if mode == "query" and k != k_all:
                continue
            if k * m < floor:
                continue
            chosen = sorted(order[:k])
            kept = tuple(p for g in chosen for p in tops[g])
            shapes.append(Shape(kept, tuple(chosen), sum(values[g] for g in chosen), n - k * m))
    return shapes


def _pick_global(options: list[list[Shape]], requested: int) -> list[Shape]:
    """Exact knapsack: removed count as close to ``requested`` as possible, then the highest kept score."""
    best: dict[int, tuple[float, list[Shape]]] = {0: (0.0, [])}
    for shapes in options:
        nxt: dict[int, tuple[float, list[Shape]]] = {}
        for removed, (value, picked) in best.items():
            for s in shapes:
                r, v = removed + s.removed, value + s.value
                if r not in nxt or v > nxt[r][0]:
                    nxt[r] = (v, picked + [s])
        best = nxt
    reach = min(best, key=lambda r: (abs(r - requested), r))
    return best[reach][1]


def _pick_layer(shapes: list[Shape], requested: int) -> Shape:
    return min(shapes, key=lambda s: (abs(s.removed - requested), s.removed, -s.value))


def select_heads(scores: UnitScores, level: float, mode: str = "auto", min_heads: int = 1,
                 scope: str = "global") -> Selection:
    """Remove about ``level`` of the current query heads (of the prunable layers), lowest scores first."""
    if not 0.0 <= level < 1.0:
        raise SentinelError(f"level must be a fraction in [0, 1), got {level}")
    if mode not in MODES:
        raise SentinelError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if scope not in SCOPES:
        raise SentinelError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    if min_heads < 1:
        raise SentinelError("min_heads must be at least 1 (format v1 keeps a head in every layer)")
    layout = scores.layout
    indices = sorted(scores.layers)
    for i in indices:
        if len(scores.layers[i]) != layout.layers[i].num_heads:
            raise SentinelError(f"layer {i}: {len(scores.layers[i])} scores for {layout.layers[i].num_heads} heads "
                                "(scores were measured on another layout)")
    if mode == "query" and all(l.num_heads == l.num_kv_heads for l in (layout.layers[i] for i in indices)):
        raise SentinelError("mode 'query' keeps every KV head, but each KV head here serves one query head; "
                            "use --mode group or auto")
    options = [layer_shapes(layout, i, np.asarray(scores.layers[i], dtype=np.float64), mode, min_heads)
               for i in indices]
    total = sum(layout.layers[i].num_heads for i in indices)
    requested = round(level * total)
    if scope == "global":
        picked = _pick_global(options, requested)
    else:
        picked = [_pick_layer(s, round(level * layout.layers[i].num_heads)) for i, s in zip(indices, options)]
    new = layout
    for i, shape in zip(indices, picked):
        layer = layout.layers[i]
        q = tuple(layer.q_heads[p] for p in shape.kept)
        kv = tuple(layer.kv_heads[g] for g in shape.kv_kept)
        clones = {c: o for c, o in layer.clone_of.items() if c in q}
        new = new.replace_layer(i, LayerHeads(q, kv, clones, layer.mlp_channels))
    return Selection(new.validate(), sum(s.removed for s in picked), requested, total)
