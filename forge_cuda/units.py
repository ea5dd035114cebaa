"""One selection over every prunable unit: KV groups, query heads and MLP channel groups.

Each layer offers a few legal *moves*, each removing some units for a known
parameter cost and a known loss of importance:

- ``group``: drop the layer's weakest KV group with all its query heads;
- ``query``: drop the weakest query head of every kept KV group (format rule 6
  keeps groups equal, so one head per group is the smallest legal step);
- ``channels``: drop the layer's ``channel_group`` weakest MLP channels.

A greedy pass repeatedly takes the move with the least importance per parameter
(score / cost) anywhere in the model until the parameter target is met; the
last moves are restricted to those that keep the overshoot below one channel
group (or, when only a head move was left, whole channel groups are given back
until the overshoot is below one group again). Head and channel scores must share units (importance.py measures both at
the input of the layer that reads them), so the ranking compares like with like.
Per-layer floors (``min_heads``, ``min_channels``) keep every layer alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from forge_cuda.families import family_for
from forge_cuda.importance import UnitScores
from forge_cuda.selection import MODES, _groups
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout, LayerHeads


@dataclass
class LayerCosts:
    """Parameters one unit of each kind costs in one layer."""

    per_q: int = 0
    per_kv: int = 0
    per_channel: int = 0


def unit_costs(model: nn.Module) -> dict[int, LayerCosts]:
    """Per-layer unit costs read off the model's current modules."""
    family = family_for(model.config.model_type)
    costs: dict[int, LayerCosts] = {}
    for i in family.attention_layers(model):
        costs.setdefault(i, LayerCosts()).per_q, costs[i].per_kv = family.head_costs(model, i)
    for i in family.mlp_layers(model):
        costs.setdefault(i, LayerCosts()).per_channel = family.channel_cost(model, i)
    return costs


@dataclass
class _LayerState:
    """What one layer still keeps, weakest last, and the moves it can make next."""

    groups: list[list[int]]  # physical q positions per kept KV group, strongest first
    group_ids: list[int]  # physical KV position of each kept group
    channels: list[int]  # physical channel positions, strongest first
    removed: dict[str, int] = field(default_factory=lambda: {"q": 0, "kv": 0, "channels": 0})
    dropped: list[list[int]] = field(default_factory=list)  # removed channel groups, in order


@dataclass(frozen=True)
class Move:
    layer: int
    kind: str  # group | query | channels
    cost: int
    score: float

    @property
    def priority(self) -> float:
        return self.score / self.cost


@dataclass(frozen=True)
class UnitSelection:
    layout: HeadLayout
    requested: int  # parameters asked to remove
    removed: int  # parameters the chosen moves remove
    moves: dict[str, int]  # how many moves of each kind were taken
    units: dict[str, int]  # query heads, KV heads and channels removed


BALANCES = ("kind", "layer", "none")


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


class UnitSelector:
    """Greedy selection across layers and unit kinds (see the module docstring)."""

    def __init__(self, layout: HeadLayout, costs: dict[int, LayerCosts], heads: UnitScores | None,
                 channels: UnitScores | None, mode: str = "auto", min_heads: int = 1,
                 min_channels: int = 1, channel_group: int = 64, balance: str = "layer"):
        if mode not in MODES:
            raise SentinelError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if min_heads < 1 or min_channels < 1 or channel_group < 1:
            raise SentinelError("min_heads, min_channels and channel_group must be at least 1")
        self.layout, self.costs, self.mode = layout, costs, mode
        self.min_heads, self.min_channels, self.channel_group = min_heads, min_channels, channel_group
        self.head_scores = {i: np.asarray(v, dtype=np.float64) for i, v in (heads.layers if heads else {}).items()}
        self.channel_scores = {i: np.asarray(v, dtype=np.float64)
                               for i, v in (channels.layers if channels else {}).items()}
        self.head_scores, self.channel_scores = balance_scores(layout, costs, self.head_scores,
                                                               self.channel_scores, balance)
        self.state: dict[int, _LayerState] = {}
        for i in sorted(set(self.head_scores) | set(self.channel_scores)):
            groups, ids = [], []
            if i in self.head_scores:
                s = self.head_scores[i]
                if len(s) != layout.layers[i].num_heads:
                    raise SentinelError(f"layer {i}: {len(s)} head scores for {layout.layers[i].num_heads} heads "
                                        "(scores were measured on another layout)")
                groups = [sorted(g, key=lambda p: -s[p]) for g in _groups(layout, layout.layers[i])]
                ids = list(range(len(groups)))
            channels_now = []
            if i in self.channel_scores:
                c = self.channel_scores[i]
                if len(c) != len(layout.channels(i)):
                    raise SentinelError(f"layer {i}: {len(c)} channel scores for {len(layout.channels(i))} channels")
                channels_now = sorted(range(len(c)), key=lambda p: (-c[p], p))
            self.state[i] = _LayerState(groups, ids, channels_now)

    # --- the moves a layer offers now ---------------------------------------------------------
    def _moves(self, i: int) -> list[Move]:
        st, cost, out = self.state[i], self.costs[i], []
        if st.groups and i in self.head_scores:
            s = self.head_scores[i]
            k, m = len(st.groups), len(st.groups[0])
            if self.mode != "query" and k > 1 and (k - 1) * m >= self.min_heads:
                weakest = min(range(k), key=lambda g: (sum(s[p] for p in st.groups[g]), -g))
                out.append(Move(i, "group", m * cost.per_q + cost.per_kv,
                                float(sum(s[p] for p in st.groups[weakest]))))
            if self.mode != "group" and m > 1 and k * (m - 1) >= self.min_heads:
                out.append(Move(i, "query", k * cost.per_q, float(sum(s[g[-1]] for g in st.groups))))
        if i in self.channel_scores and cost.per_channel:
            n = min(self.channel_group, len(st.channels) - self.min_channels)
            if n > 0:
                out.append(Move(i, "channels", n * cost.per_channel,
                                float(self.channel_scores[i][st.channels[-n:]].sum())))
        return out

    def _apply(self, move: Move) -> None:
        st = self.state[move.layer]
        if move.kind == "group":
            s = self.head_scores[move.layer]
            g = min(range(len(st.groups)), key=lambda g: (sum(s[p] for p in st.groups[g]), -g))
            st.removed["q"] += len(st.groups[g])
            st.removed["kv"] += 1
            del st.groups[g], st.group_ids[g]
        elif move.kind == "query":
            st.removed["q"] += len(st.groups)
            for g in st.groups:
                g.pop()
        else:
            n = move.cost // self.costs[move.layer].per_channel
            st.removed["channels"] += n
            st.dropped.append(st.channels[-n:])
            del st.channels[-n:]

    def _give_back(self, removed: int, requested: int, taken: dict) -> int:
        """After a big head move overshot, restore the most important channel groups that still fit."""
        while True:
            options = [(float(self.channel_scores[i][st.dropped[-1]].sum())
                        / (len(st.dropped[-1]) * self.costs[i].per_channel), i)
                       for i, st in self.state.items() if st.dropped]
            options = [(p, i) for p, i in options
                       if removed - len(self.state[i].dropped[-1]) * self.costs[i].per_channel >= requested]
            if not options:
                return removed
            _, i = max(options)
            st = self.state[i]
            group = st.dropped.pop()
            st.channels.extend(group)
            st.removed["channels"] -= len(group)
            removed -= len(group) * self.costs[i].per_channel
            taken["channels"] -= 1

    def select(self, requested: int, kinds: tuple[str, ...] = ("group", "query", "channels")) -> UnitSelection:
        """Remove at least ``requested`` parameters (and less than one channel group more, where possible)."""
        removed, taken = 0, {"group": 0, "query": 0, "channels": 0}
        slack = max((self.channel_group * c.per_channel for c in self.costs.values()), default=0)
        while removed < requested:
            moves = [m for i in self.state for m in self._moves(i) if m.kind in kinds]
            fitting = [m for m in moves if m.cost <= requested - removed + slack] or moves
            if not fitting:
                raise SentinelError(f"cannot remove {requested:,} parameters: every layer is at its floor after "
                                    f"{removed:,} (lower --min-heads / --min-channels or ask for less)")
            best = min(fitting, key=lambda m: (m.priority, m.layer, m.kind))
            self._apply(best)
            removed += best.cost
            taken[best.kind] += 1
        removed = self._give_back(removed, requested, taken)
        return UnitSelection(self._layout(), requested, removed, taken, self._removed_units())

    def select_count(self, kind: str, count: int) -> UnitSelection:
        """Remove at least ``count`` units of one kind (``channels``) by importance, for explicit levels."""
        removed, taken, units = 0, {"group": 0, "query": 0, "channels": 0}, 0
        while units < count:
            moves = [m for i in self.state for m in self._moves(i) if m.kind == kind]
            if not moves:
                raise SentinelError(f"cannot remove {count} {kind}: every layer is at its floor")
            best = min(moves, key=lambda m: (m.priority, m.layer))
            self._apply(best)
            removed += best.cost
            units += best.cost // self.costs[best.layer].per_channel
            taken[kind] += 1
        return UnitSelection(self._layout(), removed, removed, taken, self._removed_units())

    # --- results --------------------------------------------------------------------------------
    def _removed_units(self) -> dict[str, int]:
        return {k: sum(st.removed[k] for st in self.state.values()) for k in ("q", "kv", "channels")}

    def _layout(self) -> HeadLayout:
        new = self.layout
        for i, st in self.state.items():
            layer = self.layout.layers[i]
            q, kv, clones = layer.q_heads, layer.kv_heads, layer.clone_of
            if i in self.head_scores:
                kept = sorted(range(len(st.groups)), key=lambda g: st.group_ids[g])
                kv = tuple(layer.kv_heads[st.group_ids[g]] for g in kept)
                q = tuple(layer.q_heads[p] for g in kept for p in sorted(st.groups[g]))
                clones = {c: o for c, o in layer.clone_of.items() if c in q}
            channels = layer.mlp_channels
            if i in self.channel_scores:
                ids = self.layout.channels(i)
                kept_ch = tuple(ids[p] for p in sorted(st.channels))
                full = len(kept_ch) == (self.layout.base.intermediate_size or -1)
                channels = None if full else kept_ch
            new = new.replace_layer(i, LayerHeads(q, kv, clones, channels))
        return new.validate()


def channel_group_for(layout: HeadLayout, requested: int = 64) -> int:
    """The channel group size: ``requested``, shrunk so every layer offers at least 8 groups (tiny models)."""
    width = layout.base.intermediate_size or 1
    return max(1, min(requested, width // 8))
