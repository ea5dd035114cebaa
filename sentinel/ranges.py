"""Ascending index lists stored as half-open [start, stop) ranges (layout format v3).

A pruned SmolLM2 keeps ~35k MLP channel indices and a trimmed vocabulary tens of
thousands of token ids; as plain JSON int lists that made config.json ~0.5 MB.
Kept sets are mostly long runs, so ranges are a few hundred bytes. Pure Python:
the Mac runtime reads layouts without numpy or torch.
"""

from __future__ import annotations

from typing import Any, Iterable

from sentinel.errors import LayoutError


def to_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Strictly ascending ids -> [[start, stop), ...] with adjacent runs merged."""
    out: list[list[int]] = []
    for i in ids:
        i = int(i)
        if out and i == out[-1][1]:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def read_index_list(value: Any, what: str, ranges_allowed: bool) -> tuple[int, ...]:
    """A stored index list: plain ints (v1/v2 style) or [start, stop) pairs (v3 writers).

    Pairs must be ascending and disjoint (touching is fine); the ints they expand to
    are then checked like any other list by the caller (range, ascending).
    """
    if not isinstance(value, list):
        raise LayoutError(f"{what} must be a list (got {type(value).__name__})")
    if not value or not all(isinstance(v, list) for v in value):
        if any(isinstance(v, (list, bool)) or not isinstance(v, int) for v in value):
            raise LayoutError(f"{what} must hold integers or [start, stop) pairs, not a mix")
        return tuple(value)
    if not ranges_allowed:
        raise LayoutError(f"{what} is stored as [start, stop) ranges, which need format_version 3")
    out: list[int] = []
    last = None
    for pair in value:
        if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
            raise LayoutError(f"{what}: range {pair!r} is not a [start, stop) pair of integers")
        start, stop = pair
        if start >= stop:
            raise LayoutError(f"{what}: range [{start}, {stop}) is empty or reversed")
        if last is not None and start < last:
            raise LayoutError(f"{what}: range [{start}, {stop}) overlaps or precedes the one before "
                              "(ranges must be ascending and disjoint)")
        out.extend(range(start, stop))
        last = stop
    return tuple(out)
