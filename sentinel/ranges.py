"""Ascending index lists stored compactly (layout format v3): [start, stop) ranges or a bitmap.

A pruned SmolLM2 keeps ~35k MLP channel indices and a trimmed vocabulary tens of
thousands of token ids; as plain JSON int lists that made config.json ~0.5 MB.
Kept channels come in long runs, so ranges are a few hundred bytes; a domain's
kept token ids are scattered (SmolLM2 / code: 23k ids in 10k runs), so those are
written as a bitmap (one bit per id, 8 KB of base64 for 49,152 ids), whichever is
shorter. Pure Python: the Mac runtime reads layouts without numpy or torch.
"""

from __future__ import annotations

import base64
import json
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


def to_bitmap(ids: Iterable[int], size: int) -> dict[str, Any]:
    """{"bitmap": base64 of bits (id i = bit i % 8 of byte i // 8), "size": size}."""
    bits = bytearray((size + 7) // 8)
    for i in ids:
        bits[int(i) // 8] |= 1 << (int(i) % 8)
    return {"bitmap": base64.b64encode(bytes(bits)).decode("ascii"), "size": size}


def encode_index_list(ids: Iterable[int], size: int) -> list[list[int]] | dict[str, Any]:
    """The shorter (as JSON) of ranges and bitmap for ascending ``ids``; ranges on a tie (readable)."""
    ids = list(ids)
    ranges, bitmap = to_ranges(ids), to_bitmap(ids, size)
    return ranges if len(json.dumps(ranges)) <= len(json.dumps(bitmap)) else bitmap


def _read_bitmap(value: dict, what: str) -> tuple[int, ...]:
    size = value.get("size")
    if set(value) != {"bitmap", "size"} or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"{what}: a bitmap is {{\"bitmap\": base64, \"size\": n}} (got keys {sorted(value)})")
    try:
        bits = base64.b64decode(value["bitmap"], validate=True)
    except (TypeError, ValueError):
        raise LayoutError(f"{what}: bitmap is not valid base64") from None
    if len(bits) != (size + 7) // 8:
        raise LayoutError(f"{what}: bitmap holds {len(bits)} bytes, size {size} needs {(size + 7) // 8}")
    out = tuple(i for i in range(size) if bits[i // 8] >> (i % 8) & 1)
    if any(bits[i // 8] >> (i % 8) & 1 for i in range(size, len(bits) * 8)):
        raise LayoutError(f"{what}: bitmap sets bits at or beyond size {size}")
    return out


def read_index_list(value: Any, what: str, ranges_allowed: bool) -> tuple[int, ...]:
    """A stored index list: plain ints (v1/v2 style), [start, stop) pairs or a bitmap (v3 writers).

    Pairs must be ascending and disjoint (touching is fine); the ints they expand to
    are then checked like any other list by the caller (range, ascending).
    """
    if isinstance(value, dict):
        if not ranges_allowed:
            raise LayoutError(f"{what} is stored as a bitmap, which needs format_version 3")
        return _read_bitmap(value, what)
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
