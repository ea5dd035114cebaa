"""The teacher's hidden states at every decoder-block boundary, for fixed batches of training windows.

Block i of the student learns to map the teacher's input of block i (state ``h_i``) to
the teacher's output (``h_{i+1}``), so one teacher forward gives the pairs of every
block: ``L + 1`` states per window. States go to disk (one safetensors file per batch,
in ``dtype``) as long as they fit ``max_bytes``; batches past the bound are recomputed
by a teacher forward that stops after the block asked for. The keyword arguments a
block is called with (rotary cos/sin, causal mask, position ids) depend only on the
batch shape, so they are captured once per block and reused for every batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from forge_cuda.families import family_for


class _Stop(Exception):
    """Raised by a hook once the states asked for are in hand (the rest of the forward is not needed)."""


def fixed_batches(windows: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Full batches only (every block call then has one shape), or all windows when fewer than a batch."""
    if len(windows) < batch_size:
        return [windows]
    return [windows[i:i + batch_size] for i in range(0, len(windows) - batch_size + 1, batch_size)]


def _hidden(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _output(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


class TeacherStates:
    """``pair(batch, block)`` -> (teacher input, teacher output) of that block; ``call(block)`` -> its extra args."""

    def __init__(self, teacher: nn.Module, windows: torch.Tensor, batch_size: int, folder: Path,
                 max_bytes: int, dtype: torch.dtype = torch.float16):
        self.teacher, self.folder, self.dtype = teacher, Path(folder), dtype
        self.layers = family_for(teacher.config.model_type).decoder_layers(teacher)
        self.batches = fixed_batches(windows, batch_size)
        b, t = self.batches[0].shape
        hidden = teacher.get_input_embeddings().weight.shape[1]
        self.batch_bytes = (len(self.layers) + 1) * b * t * hidden * torch.finfo(dtype).bits // 8
        self.cached = min(len(self.batches), max(0, int(max_bytes)) // self.batch_bytes)
        self._calls: dict[int, tuple] = {}

    @property
    def device(self) -> torch.device:
        return next(self.teacher.parameters()).device

    def _forward(self, batch: torch.Tensor, last: int) -> list[torch.Tensor]:
        """Teacher states h_0 .. h_{last+1} for one batch; also records each block's call arguments."""
        states: list[torch.Tensor] = []

        def pre(i):
            def hook(module, args, kwargs):
                states.append(_hidden(args, kwargs).detach())
                if i not in self._calls:
                    extra = tuple(None if hasattr(a, "get_seq_length") else a for a in args[1:])
                    self._calls[i] = (extra, {k: v for k, v in kwargs.items()
                                              if k not in ("hidden_states", "past_key_values", "past_key_value",
                                                           "layer_past", "cache")})
            return hook

        def post(module, args, kwargs, out):
            states.append(_output(out).detach())
            raise _Stop

        handles = [layer.register_forward_pre_hook(pre(i), with_kwargs=True) for i, layer in enumerate(self.layers)]
        handles.append(self.layers[last].register_forward_hook(post, with_kwargs=True))
        try:
            with torch.no_grad():
                self.teacher(input_ids=batch.to(self.device), use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return states

    def _path(self, j: int) -> Path:
        return self.folder / f"batch_{j:05d}.safetensors"

    def fill(self, progress=None) -> None:
        """Write the batches that fit the bound (files already there, from an interrupted run, are kept)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for j in range(self.cached):
            if self._path(j).exists():
                continue
            states = torch.stack(self._forward(self.batches[j], len(self.layers) - 1)).to(self.dtype).cpu()
            tmp = self._path(j).with_suffix(".tmp")
            save_file({"states": states.contiguous()}, str(tmp))
            os.replace(tmp, self._path(j))
            if progress:
                progress(j + 1, self.cached)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("batch_*.safetensors"))

    def pair(self, j: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_i, h_{i+1}) of batch j on the teacher's device, in fp32 (or the teacher's dtype when wider)."""
        if j < self.cached and self._path(j).exists():
            with safe_open(str(self._path(j)), framework="pt") as f:
                both = f.get_slice("states")[i:i + 2]
            h_in, h_out = both[0], both[1]
        else:
            states = self._forward(self.batches[j], i)
            h_in, h_out = states[i], states[i + 1]
        return h_in.to(self.device, torch.float32), h_out.to(self.device, torch.float32)

    def call(self, i: int, dtype: torch.dtype) -> tuple[tuple, dict]:
        """Block i's positional and keyword arguments after the hidden states, float tensors in ``dtype``."""
        if i not in self._calls:
            self._forward(self.batches[0], i)

        def cast(v):
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.to(dtype)
            if isinstance(v, tuple):
                return tuple(cast(x) for x in v)
            return v

        args, kwargs = self._calls[i]
        return cast(args), {k: cast(v) for k, v in kwargs.items()}
