"""Search strategies over the space of legal moves (space.py): which units to remove.

- Greedy to a size target (``greedy_search(...).select``): repeatedly take the move
  with the least importance per parameter (score / cost) anywhere in the model
  until the parameter target is met; the last moves are restricted to those that
  keep the overshoot below one channel group (or, when only a head move was left,
  whole channel groups are given back until the overshoot is below one group
  again). Head and channel scores must share units (importance.py measures both at
  the input of the layer that reads them), so the ranking compares like with like.
- Exact head count (``select_heads``): for each legal "k KV groups x m heads" shape
  of a layer the best heads are easy (top-m per group, then the top-k groups);
  which shape each layer takes is a small exact knapsack over layers that removes
  as close to the requested number of query heads as the shapes allow while
  keeping the largest total score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from forge_cuda.pruning.importance import UnitScores
from forge_cuda.pruning.options import BALANCES, MODES, SCOPES
from forge_cuda.pruning.space import LayerCosts, Part, Space, head_shape_ok, kv_groups, layer_heads
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout


@dataclass(frozen=True)
class UnitSelection:
    layout: HeadLayout
    requested: int  # parameters asked to remove
    removed: int  # parameters the chosen moves remove
    moves: dict[str, int]  # how many moves of each kind were taken
    units: dict[str, int]  # query heads, KV heads and channels removed


def balance_scores(layout: HeadLayout, costs: dict[int, LayerCosts], heads: dict, channels: dict,
                   balance: str) -> tuple[dict, dict]:
    """Re-express scores so that units of both kinds compete on one scale (priority = score / cost).

    ``layer`` (default): a unit's score relative to the median unit of its kind in its layer,
    times its cost, so a median head and a median channel have the same priority anywhere and
    every layer gives up its below-median units first. The median, not the mean or the sum:
    a few outlier channels (massive activations) would otherwise make every other channel of
    their layer look free, and such layers were cut to the floor (measured). ``kind``: shares
    of the whole model's importance of that kind per share of its parameters, so layers compete
    within a kind. ``none``: raw scores (only if both kinds' scores are on one scale).
    """
    if balance not in BALANCES:
        raise SentinelError(f"unknown balance {balance!r}; choose from {', '.join(BALANCES)}")
    if balance == "none":
        return heads, channels
    head_cost = {i: c.per_q + c.per_kv / max(1, layout.layers[i].num_heads // max(1, layout.layers[i].num_kv_heads))
                 for i, c in costs.items()}
    chan_cost = {i: c.per_channel for i, c in costs.items()}

    def rescale(scores: dict, unit_cost: dict) -> dict:
        if balance == "layer":
            return {i: s * unit_cost[i] / max(float(np.median(s)), 1e-30) for i, s in scores.items()}
        total_s = max(sum(float(s.sum()) for s in scores.values()), 1e-30)
        total_p = sum(len(s) * unit_cost[i] for i, s in scores.items())
        return {i: s * total_p / total_s for i, s in scores.items()}

    return rescale(heads, head_cost), rescale(channels, chan_cost)


class GreedySearch:
    """Greedy walk over a Space by importance per parameter (see the module docstring)."""

    def __init__(self, space: Space):
        self.space = space

    def select(self, requested: int, kinds: tuple[str, ...] | None = None) -> UnitSelection:
        """Remove at least ``requested`` parameters (and less than one channel group more, where possible).

        ``kinds``: the move kinds allowed (default: every kind the space's parts offer).
        """
        removed, taken = 0, {"group": 0, "query": 0, "channels": 0}
        slack = self.space.slack()
        for free in [m for m in self.space.moves() if m.free and (kinds is None or m.kind in kinds)]:
            self.space.apply(free)  # what the policy already gave away counts first, even past the target
            removed += free.cost
            taken[free.kind] = taken.get(free.kind, 0) + 1
        while removed < requested:
            moves = [m for m in self.space.moves() if kinds is None or m.kind in kinds]
            fitting = [m for m in moves if m.cost <= requested - removed + slack] or moves
            if not fitting:
                raise SentinelError(f"cannot remove {requested:,} parameters: every layer is at its floor after "
                                    f"{removed:,} (lower --min-heads / --min-channels or ask for less)")
            best = min(fitting, key=lambda m: (m.priority, m.part, m.kind))
            self.space.apply(best)
            removed += best.cost
            taken[best.kind] = taken.get(best.kind, 0) + 1
        removed = self._give_back(removed, requested, taken)
        return UnitSelection(self.space.result(), requested, removed, taken, self.space.removed_units())

    def _give_back(self, removed: int, requested: int, taken: dict) -> int:
        """After a big head move overshot, restore the most important dropped groups that still fit."""
        while True:
            options = [m for m in self.space.returnable() if removed - m.cost >= requested]
            if not options:
                return removed
            back = max(options, key=lambda m: (m.priority, m.part))
            self.space.give_back(back)
            removed -= back.cost
            taken[back.kind] -= 1

    def select_count(self, kind: str, count: int) -> UnitSelection:
        """Remove at least ``count`` units of one kind (``channels``) by importance, for explicit levels."""
        removed, taken, units = 0, {"group": 0, "query": 0, "channels": 0}, 0
        while units < count:
            moves = [m for m in self.space.moves() if m.kind == kind]
            if not moves:
                raise SentinelError(f"cannot remove {count} {kind}: every layer is at its floor")
            best = min(moves, key=lambda m: (m.priority, m.part))
            self.space.apply(best)
            removed += best.cost
            units += best.units
            taken[kind] += 1
        return UnitSelection(self.space.result(), removed, removed, taken, self.space.removed_units())


def greedy_search(layout: HeadLayout, costs: dict[int, LayerCosts], heads: UnitScores | None,
                  channels: UnitScores | None, mode: str = "auto", min_heads: int = 1, min_channels: int = 1,
                  channel_group: int = 64, balance: str = "layer", extra: Sequence[Part] = ()) -> GreedySearch:
    """A greedy search over the layers that have scores (balanced across kinds) and any global ``extra`` parts.

    A global part's move scores must already be on the balanced scale (priority = score / cost).
    """
    if mode not in MODES:
        raise SentinelError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    head_s = {i: np.asarray(v, dtype=np.float64) for i, v in (heads.layers if heads else {}).items()}
    chan_s = {i: np.asarray(v, dtype=np.float64) for i, v in (channels.layers if channels else {}).items()}
    head_s, chan_s = balance_scores(layout, costs, head_s, chan_s, balance)
    return GreedySearch(Space.build(layout, costs, head_s, chan_s, mode=mode, min_heads=min_heads,
                                    min_channels=min_channels, channel_group=channel_group, extra=extra))


# --- exact head count --------------------------------------------------------------------------
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


def layer_shapes(layout: HeadLayout, index: int, scores: np.ndarray, mode: str, min_heads: int) -> list[Shape]:
    """Every legal (k groups x m heads) shape of one layer allowed by the mode, with its best heads."""
    layer = layout.layers[index]
    groups = kv_groups(layout, layer)
    n, k_all, m_all = layer.num_heads, len(groups), len(groups[0])
    shapes = []
    for m in range(1, m_all + 1):
        # best m members of each group (stable: ties keep the lower position)
        tops = [sorted(sorted(g, key=lambda p: -scores[p])[:m]) for g in groups]
        values = [float(sum(scores[p] for p in t)) for t in tops]
        order = sorted(range(k_all), key=lambda g: -values[g])
        for k in range(1, k_all + 1):
            if not head_shape_ok(k, m, (k_all, m_all), mode, min_heads):
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


def _check_head_request(scores: UnitScores, level: float, mode: str, min_heads: int, scope: str) -> None:
    if not 0.0 <= level < 1.0:
        raise SentinelError(f"level must be a fraction in [0, 1), got {level}")
    if mode not in MODES:
        raise SentinelError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if scope not in SCOPES:
        raise SentinelError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    if min_heads < 1:
        raise SentinelError("min_heads must be at least 1 (format v1 keeps a head in every layer)")
    layout = scores.layout
    for i in sorted(scores.layers):
        if len(scores.layers[i]) != layout.layers[i].num_heads:
            raise SentinelError(f"layer {i}: {len(scores.layers[i])} scores for {layout.layers[i].num_heads} heads "
                                "(scores were measured on another layout)")
    if mode == "query" and all(layout.layers[i].num_heads == layout.layers[i].num_kv_heads for i in scores.layers):
        raise SentinelError("mode 'query' keeps every KV head, but each KV head here serves one query head; "
                            "use --mode group or auto")


def select_heads(scores: UnitScores, level: float, mode: str = "auto", min_heads: int = 1,
                 scope: str = "global") -> Selection:
    """Remove about ``level`` of the current query heads (of the prunable layers), lowest scores first."""
    _check_head_request(scores, level, mode, min_heads, scope)
    layout = scores.layout
    indices = sorted(scores.layers)
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
        per_group = len(shape.kept) // max(1, len(shape.kv_kept))
        groups = [(g, list(shape.kept[n * per_group:(n + 1) * per_group])) for n, g in enumerate(shape.kv_kept)]
        new = new.replace_layer(i, layer_heads(layout, i, groups))
    return Selection(new.validate(), sum(s.removed for s in picked), requested, total)
