"""The space of legal pruning moves: what each part of the model can give up next, and what it costs.

A *part* is one place units live. Today every part is a decoder layer
(``LayerPart``) offering three moves:

- ``group``: drop the layer's weakest KV group with all its query heads;
- ``query``: drop the weakest query head of every kept KV group;
- ``channels``: drop the layer's ``channel_group`` weakest MLP channels.

FORMAT rule 6 (every kept KV head serves the same number of query heads) is
``head_shape_ok`` below, and nowhere else: a layer's heads are always "k KV groups
x m query heads", and the exact search (search.select_heads) enumerates the
shapes it allows while the greedy search steps between them. A global unit kind
(e.g. vocabulary rows) is one more part with the same four methods (``moves``,
``apply``, ``returnable``/``give_back``, ``write``); the searches need no change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
from torch import nn

from forge_cuda.families import family_for
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout, LayerHeads

MOVE_KINDS = ("group", "query", "channels")


@dataclass
class LayerCosts:
    """Parameters one unit of each kind costs in one layer."""

    per_q: int = 0
    per_kv: int = 0
    per_channel: int = 0


def unit_costs(model: nn.Module) -> dict[int, LayerCosts]:
    """Per-layer unit costs read off the model's current modules (works on the meta device)."""
    family = family_for(model.config.model_type)
    costs: dict[int, LayerCosts] = {}
    for i in family.attention_layers(model):
        costs.setdefault(i, LayerCosts()).per_q, costs[i].per_kv = family.head_costs(model, i)
    for i in family.mlp_layers(model):
        costs.setdefault(i, LayerCosts()).per_channel = family.channel_cost(model, i)
    return costs


def kv_bytes_per_token(model: nn.Module, layout: HeadLayout, bytes_per_value: int) -> int:
    """K and V cache bytes one token costs across the attention layers (linear-attention state excluded)."""
    family = family_for(model.config.model_type)
    return sum(2 * layout.layers[i].num_kv_heads * layout.base.head_dim * bytes_per_value
               for i in family.attention_layers(model))


def channel_group_for(layout: HeadLayout, requested: int = 64) -> int:
    """The channel group size: ``requested``, shrunk so every layer offers at least 8 groups (tiny models)."""
    width = layout.base.intermediate_size or 1
    return max(1, min(requested, width // 8))


def kv_groups(layout: HeadLayout, layer: LayerHeads) -> list[list[int]]:
    """Physical query positions of each kept KV head, in kv_heads order."""
    by_kv = {kv: [] for kv in layer.kv_heads}
    for p, q in enumerate(layer.q_heads):
        by_kv[layout.kv_group(layer, q)].append(p)
    return [by_kv[kv] for kv in layer.kv_heads]


def head_shape_ok(k: int, m: int, start: tuple[int, int], mode: str, min_heads: int) -> bool:
    """Whether a layer that starts as ``start`` = (KV groups, heads per group) may become k groups x m heads.

    Rule 6 makes every legal head set such a grid; ``mode`` query keeps every KV group,
    group keeps every group whole; ``min_heads`` (capped at the layer's count) is the floor.
    """
    k0, m0 = start
    return (1 <= k <= k0 and 1 <= m <= m0 and (mode != "group" or m == m0) and (mode != "query" or k == k0)
            and k * m >= min(min_heads, k0 * m0))


def layer_heads(layout: HeadLayout, index: int, groups: list[tuple[int, list[int]]] | None = None,
                channels: list[int] | None = None) -> LayerHeads:
    """Layer ``index`` keeping only the given physical units (None: that kind unchanged).

    ``groups``: (KV position, its kept query positions) in ascending KV position;
    ``channels``: kept physical MLP channel positions. Clones of dropped heads are forgotten.
    """
    layer = layout.layers[index]
    q, kv, clones, mlp = layer.q_heads, layer.kv_heads, layer.clone_of, layer.mlp_channels
    if groups is not None:
        kv = tuple(layer.kv_heads[g] for g, _ in groups)
        q = tuple(layer.q_heads[p] for _, positions in groups for p in sorted(positions))
        clones = {c: o for c, o in layer.clone_of.items() if c in q}
    if channels is not None:
        ids = layout.channels(index)
        kept = tuple(ids[p] for p in sorted(channels))
        mlp = None if len(kept) == (layout.base.intermediate_size or -1) else kept
    return LayerHeads(q, kv, clones, mlp)


@dataclass(frozen=True)
class Move:
    part: int  # index of the part offering it (parts are in layer order)
    kind: str  # group | query | channels (or a global part's kind)
    cost: int  # parameters removed
    score: float  # importance removed
    units: int  # units removed (query heads, or channels)
    free: bool = False  # already allowed by the user's policy (vocabulary rows): taken first, whatever its size

    @property
    def priority(self) -> float:
        return self.score / self.cost


class Part(Protocol):
    """What a search needs from one place units live (a layer, or a global kind such as vocabulary rows)."""

    removed: dict[str, int]  # units removed so far, by unit name

    def moves(self, part: int, space: "Space") -> list[Move]: ...  # the legal moves now, tagged with ``part``
    def apply(self, move: Move) -> None: ...
    def returnable(self, part: int) -> Move | None: ...  # the last fine-grained move, if it can be undone
    def give_back(self) -> None: ...  # undo that move
    def write(self, layout: HeadLayout, new: HeadLayout) -> HeadLayout: ...  # ``new`` plus what this part keeps
    # a global part may also define ``slack() -> int``: its largest fine-grained move (see Space.slack)


@dataclass
class LayerPart:
    """What one layer still keeps, weakest last, and the moves it can make next."""

    index: int
    cost: LayerCosts
    heads: np.ndarray | None  # head scores by physical position (None: heads are not pruned here)
    channel_scores: np.ndarray | None
    groups: list[list[int]]  # physical q positions per kept KV group, strongest first
    group_ids: list[int]  # physical KV position of each kept group
    channels: list[int]  # physical channel positions, strongest first
    start: tuple[int, int] = (0, 0)  # (KV groups, heads per group) before any move
    removed: dict[str, int] = field(default_factory=lambda: {"q": 0, "kv": 0, "channels": 0})
    dropped: list[list[int]] = field(default_factory=list)  # removed channel groups, in order

    def _weakest_group(self) -> int:
        s = self.heads
        return min(range(len(self.groups)), key=lambda g: (sum(s[p] for p in self.groups[g]), -g))

    def moves(self, part: int, space: "Space") -> list[Move]:
        out, cost = [], self.cost
        if self.groups and self.heads is not None:
            s, (k, m) = self.heads, (len(self.groups), len(self.groups[0]))
            if head_shape_ok(k - 1, m, self.start, space.mode, space.min_heads):
                out.append(Move(part, "group", m * cost.per_q + cost.per_kv,
                                float(sum(s[p] for p in self.groups[self._weakest_group()])), m))
            if head_shape_ok(k, m - 1, self.start, space.mode, space.min_heads):
                out.append(Move(part, "query", k * cost.per_q, float(sum(s[g[-1]] for g in self.groups)), k))
        if self.channel_scores is not None and cost.per_channel:
            n = min(space.channel_group, len(self.channels) - space.min_channels)
            if n > 0:
                out.append(Move(part, "channels", n * cost.per_channel,
                                float(self.channel_scores[self.channels[-n:]].sum()), n))
        return out

    def apply(self, move: Move) -> None:
        if move.kind == "group":
            g = self._weakest_group()
            self.removed["q"] += len(self.groups[g])
            self.removed["kv"] += 1
            del self.groups[g], self.group_ids[g]
        elif move.kind == "query":
            self.removed["q"] += len(self.groups)
            for g in self.groups:
                g.pop()
        else:
            self.removed["channels"] += move.units
            self.dropped.append(self.channels[-move.units:])
            del self.channels[-move.units:]

    def returnable(self, part: int) -> Move | None:
        """The last channel group dropped, as the move that removed it (None when nothing can come back)."""
        if not self.dropped:
            return None
        group = self.dropped[-1]
        return Move(part, "channels", len(group) * self.cost.per_channel,
                    float(self.channel_scores[group].sum()), len(group))

    def give_back(self) -> None:
        group = self.dropped.pop()
        self.channels.extend(group)
        self.removed["channels"] -= len(group)

    def write(self, layout: HeadLayout, new: HeadLayout) -> HeadLayout:
        """``new`` with this layer replaced by what it keeps (positions refer to ``layout``)."""
        groups = None
        if self.heads is not None:
            kept = sorted(range(len(self.groups)), key=lambda g: self.group_ids[g])
            groups = [(self.group_ids[g], self.groups[g]) for g in kept]
        channels = self.channels if self.channel_scores is not None else None
        return new.replace_layer(self.index, layer_heads(layout, self.index, groups, channels))


@dataclass
class Space:
    """Every part's state plus the rules its moves obey; searches walk it (search.py)."""

    layout: HeadLayout
    costs: dict[int, LayerCosts]
    parts: list[Part]  # layer parts in layer order; global parts (if any) after them
    mode: str = "auto"
    min_heads: int = 1
    min_channels: int = 1
    channel_group: int = 64

    @classmethod
    def build(cls, layout: HeadLayout, costs: dict[int, LayerCosts], heads: dict[int, np.ndarray],
              channels: dict[int, np.ndarray], mode: str = "auto", min_heads: int = 1, min_channels: int = 1,
              channel_group: int = 64, extra: Sequence[Part] = ()) -> "Space":
        """One part per layer that has head or channel scores (by physical position), then ``extra``
        (global parts, e.g. vocabulary rows)."""
        if min_heads < 1 or min_channels < 1 or channel_group < 1:
            raise SentinelError("min_heads, min_channels and channel_group must be at least 1")
        parts = []
        for i in sorted(set(heads) | set(channels)):
            groups, ids, s = [], [], heads.get(i)
            if s is not None:
                if len(s) != layout.layers[i].num_heads:
                    raise SentinelError(f"layer {i}: {len(s)} head scores for {layout.layers[i].num_heads} heads "
                                        "(scores were measured on another layout)")
                groups = [sorted(g, key=lambda p: -s[p]) for g in kv_groups(layout, layout.layers[i])]
                ids = list(range(len(groups)))
            c, kept = channels.get(i), []
            if c is not None:
                if len(c) != len(layout.channels(i)):
                    raise SentinelError(f"layer {i}: {len(c)} channel scores for {len(layout.channels(i))} channels")
                kept = sorted(range(len(c)), key=lambda p: (-c[p], p))
            start = (len(groups), len(groups[0])) if groups else (0, 0)
            parts.append(LayerPart(i, costs[i], s, c, groups, ids, kept, start))
        return cls(layout, costs, parts + list(extra), mode, min_heads, min_channels, channel_group)

    def moves(self) -> list[Move]:
        return [m for n, part in enumerate(self.parts) for m in part.moves(n, self)]

    def apply(self, move: Move) -> None:
        self.parts[move.part].apply(move)

    def slack(self) -> int:
        """The largest fine-grained move: how far a size target may be overshot on the way."""
        fine = [p.slack() for p in self.parts if not isinstance(p, LayerPart) and hasattr(p, "slack")]
        return max([self.channel_group * c.per_channel for c in self.costs.values()] + fine, default=0)

    def returnable(self) -> list[Move]:
        return [m for n, part in enumerate(self.parts) for m in [part.returnable(n)] if m is not None]

    def give_back(self, move: Move) -> None:
        self.parts[move.part].give_back()

    def removed_units(self) -> dict[str, int]:
        names = dict.fromkeys(["q", "kv", "channels"] + [k for p in self.parts for k in p.removed])
        return {k: sum(p.removed.get(k, 0) for p in self.parts) for k in names}

    def result(self) -> HeadLayout:
        """The layout every part's kept units make (validated against the format)."""
        new = self.layout
        for part in self.parts:
            new = part.write(self.layout, new)
        return new.validate()
