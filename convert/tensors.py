"""Read source tensors lazily and write safetensors shards one tensor at a time.

Reading goes through ``mx.load``: MLX parses the safetensors header and hands
back lazy arrays that read their bytes from the file only when evaluated, so a
conversion holds one tensor at a time (bfloat16 included, which numpy cannot
represent). Writing is the small part no library offers: ``mx.save_safetensors``
and ``safetensors.numpy.save_file`` both need every tensor of a shard in memory,
so :class:`ShardWriter` writes the header from a plan of names, dtypes and shapes
first and then streams each tensor's bytes as it is produced.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import mlx.core as mx
import numpy as np

from sentinel.errors import SentinelError, os_error
from sentinel.weights import weight_files  # noqa: F401  (re-exported for convert's callers)

# safetensors dtype codes of the MLX dtypes a conversion can produce.
DTYPE_CODES = {mx.float32: "F32", mx.float16: "F16", mx.bfloat16: "BF16", mx.uint32: "U32",
               mx.int32: "I32", mx.int64: "I64", mx.uint8: "U8", mx.int8: "I8", mx.bool_: "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """What one output tensor will be: enough to write the header before the data."""

    name: str
    dtype: mx.Dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.size


def open_tensors(folder: Path) -> dict[str, mx.array]:
    """Every tensor of a checkpoint as a lazy MLX array (nothing is read yet)."""
    tensors: dict[str, mx.array] = {}
    for file in weight_files(folder):
        try:
            shard = mx.load(str(file), format="safetensors")
        except (RuntimeError, ValueError, OSError) as e:
            raise SentinelError(f"{file} is not a readable safetensors file ({_first_line(e)})") from None
        dup = next((k for k in shard if k in tensors), None)
        if dup is not None:
            raise SentinelError(f"{file.name}: tensor {dup} appears in more than one shard")
        tensors.update(shard)
    return tensors


def materialize(name: str, array: mx.array) -> mx.array:
    """Evaluate one lazy tensor, turning a short read of a damaged file into one line."""
    try:
        mx.eval(array)
    except (RuntimeError, ValueError) as e:
        raise SentinelError(f"cannot read tensor {name} ({_first_line(e)})") from None
    return array


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Greedy split in plan order; a tensor larger than the limit gets a shard of its own."""
    shards: list[list[TensorSpec]] = []
    size = 0
    for spec in specs:
        if not shards or size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


def shard_names(count: int) -> list[str]:
    """Same file names as mlx-lm's save_model."""
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


class ShardWriter:
    """Writes one safetensors file whose header is known up front; tensors arrive in plan order."""

    def __init__(self, path: Path, specs: list[TensorSpec], metadata: dict[str, str] | None = None,
                 label: Path | None = None):
        self.path = path
        self.label = label or path  # the name users know (the final path, not the temp folder)
        self.specs = list(specs)
        self._next = 0
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "mlx"})}
        offset = 0
        for spec in self.specs:
            header[spec.name] = {"dtype": DTYPE_CODES[spec.dtype], "shape": list(spec.shape),
                                 "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned, as safetensors does
        self._file: BinaryIO = open(path, "wb")
        self._write(struct.pack("<Q", len(raw)) + raw)

    def write(self, name: str, array: mx.array) -> None:
        spec = self.specs[self._next]
        if name != spec.name or array.dtype != spec.dtype or tuple(array.shape) != spec.shape:
            raise AssertionError(f"tensor {name} {array.dtype}{tuple(array.shape)} does not match "
                                 f"the planned {spec.name} {spec.dtype}{spec.shape}")
        view = array.view(mx.uint16) if array.dtype == mx.bfloat16 else array
        self._write(np.ascontiguousarray(np.asarray(view)).data)
        self._next += 1

    def close(self) -> None:
        if self._next != len(self.specs):
            raise AssertionError(f"{self.path.name}: {len(self.specs) - self._next} planned tensors not written")
        self._file.close()

    def _write(self, data) -> None:
        try:
            self._file.write(data)
        except OSError as e:
            self._file.close()
            raise os_error(e, self.label) from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
