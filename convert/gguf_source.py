"""Source tensors for the GGUF writer, read with numpy alone (no torch, no MLX).

A GGUF conversion may run on the NVIDIA box that forged the model (no MLX
there) or on a Mac (no torch), so the checkpoint is read straight from its
safetensors files: the JSON header gives each tensor's dtype, shape and byte
range, and ``np.memmap`` maps those bytes without reading the file. bfloat16,
which numpy lacks, is widened to float32 by a 16-bit shift (exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentinel.errors import SentinelError
from sentinel.weights import tensor_index, weight_files

NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
                "I64": np.int64, "I32": np.int32, "I8": np.int8, "U8": np.uint8}


@dataclass(frozen=True)
class SourceTensor:
    """Where one tensor's bytes are; nothing is read until :meth:`load`."""

    file: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file

    def load(self) -> np.ndarray:
        """The tensor as float32 (floating types) or its own integer type."""
        count = int(np.prod(self.shape, dtype=np.int64))
        try:
            raw = np.memmap(self.file, dtype=NUMPY_DTYPES[self.dtype], mode="r", offset=self.start,
                            shape=(count,))
        except (ValueError, OSError) as e:  # the file is shorter than its header says
            raise SentinelError(f"cannot read tensor {self.name} from {self.file.name} ({e})") from None
        if self.dtype == "BF16":
            array = (raw.astype(np.uint32) << 16).view(np.float32)
        elif self.dtype in ("F16", "F64"):
            array = raw.astype(np.float32)
        else:
            array = np.array(raw)
        return array.reshape(self.shape)


def open_source(folder: Path) -> dict[str, SourceTensor]:
    """Every tensor of a checkpoint, located from the safetensors headers."""
    tensors: dict[str, SourceTensor] = {}
    for file in weight_files(folder):
        for tensor in _read_file(file):
            if tensor.name in tensors:
                raise SentinelError(f"{file.name}: tensor {tensor.name} appears in more than one shard")
            tensors[tensor.name] = tensor
    return tensors


def _read_file(file: Path) -> list[SourceTensor]:
    """The file's tensors, located by the one validated safetensors header reader."""
    out = []
    for name, (dtype, shape, start) in tensor_index(file).items():
        if dtype not in NUMPY_DTYPES:
            raise SentinelError(f"{file.name}: tensor {name} has dtype {dtype}, which the GGUF converter does not read")
        out.append(SourceTensor(file, name, dtype, tuple(shape), start))
    return out
