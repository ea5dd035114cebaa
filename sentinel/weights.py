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

# Safetensors element sizes (the format's own dtype names).
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation refuses headers above 100 MB


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a checkpoint (via the index when there is one)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as e:
            raise SentinelError(f"{index} is not a valid safetensors index ({e})") from None
        bad = next((n for n in names if not isinstance(n, str) or Path(n).name != n or n in ("", ".", "..")), None)
        if bad is not None:  # a shard is a file of this folder: no numbers, no paths that leave it
            raise SentinelError(f"{index} is not a valid safetensors index (shard {bad!r} is not a file name)")
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
    """name -> (dtype, shape) of one safetensors file (``tensor_index`` without the offsets)."""
    return {name: (dtype, shape) for name, (dtype, shape, _) in tensor_index(file).items()}


def tensor_index(file: Path) -> dict[str, tuple[str, list[int], int]]:
    """name -> (dtype, shape, absolute byte offset) of one safetensors file, reading only its JSON header.

    The 8-byte header length is checked against the file size before anything is
    allocated, and every tensor must lie inside the file with the byte size its dtype
    and shape imply: a truncated or garbage file is one SentinelError here, not a
    MemoryError or a crash deep inside a loader.
    """
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise SentinelError(f"{file} is not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise SentinelError(f"{file} is not a safetensors file or is truncated (header length {n:,} "
                                    f"bytes, file {size:,} bytes)")
            header = json.loads(f.read(n))
    except PermissionError:
        raise SentinelError(f"cannot read {file} (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SentinelError(f"{file} has a corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise SentinelError(f"{file} has a corrupt safetensors header (not a JSON object)")
    data = size - 8 - n
    tensors: dict[str, tuple[str, list[int], int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
            ok = all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end)) and begin <= end
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise SentinelError(f"{file} has a corrupt safetensors header (entry {name!r})")
        if end > data:
            raise SentinelError(f"{file} is truncated: tensor {name!r} ends at byte {end:,} of a "
                                f"{data:,}-byte data section")
        if dtype in DTYPE_BYTES and end - begin != prod(shape) * DTYPE_BYTES[dtype]:
            raise SentinelError(f"{file} has a corrupt safetensors header (tensor {name!r}: {end - begin:,} "
                                f"bytes for {dtype} {shape})")
        tensors[name] = (dtype, shape, 8 + n + begin)
    return tensors


def header_param_count(folder: Path) -> int:
    """Parameters of a checkpoint from its headers alone (quantized weights count as stored)."""
    return sum(prod(shape) for file in weight_files(folder) for _, shape in read_header(file).values())
