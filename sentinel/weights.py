"""Safetensors checkpoints read without a framework: which shards, and what their headers say.

Shared by the torch loader, the converter, the planner and ``models list``, so
"where are the weights" has one answer (and one set of error messages).
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

from sentinel.errors import SentinelError


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a checkpoint (via the index when there is one)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise SentinelError(f"{index} is not a valid safetensors index ({e})") from None
        files = [folder / n for n in names]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SentinelError(f"{folder} has no safetensors weights")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SentinelError(f"{folder}: shard {missing[0]} listed in the index is missing")
    return files


def read_header(file: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) of one safetensors file, reading only its JSON header."""
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SentinelError(f"{file} is not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SentinelError(f"{file} has a corrupt safetensors header") from None
    return {name: (info["dtype"], list(info["shape"])) for name, info in header.items() if name != "__metadata__"}


def header_param_count(folder: Path) -> int:
    """Parameters of a checkpoint from its headers alone (quantized weights count as stored)."""
    return sum(prod(shape) for file in weight_files(folder) for _, shape in read_header(file).values())
