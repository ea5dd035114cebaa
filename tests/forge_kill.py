"""A forge run killed at one training stage (what SIGKILL does to a phase), for resume tests."""

from contextlib import contextmanager

import torch
from safetensors.torch import load_file

import forge_cuda.recovery.phases as phases_mod


@contextmanager
def killed_at(monkeypatch, stage: str):
    """Within the block, the training call named ``stage`` (e.g. "forged c2") raises KeyboardInterrupt."""
    real = phases_mod.train_model

    def train_model(model, windows, cfg, desc="train", **kw):
        if desc == stage:
            raise KeyboardInterrupt("simulated kill")
        return real(model, windows, cfg, desc=desc, **kw)

    monkeypatch.setattr(phases_mod, "train_model", train_model)
    try:
        yield
    finally:
        monkeypatch.setattr(phases_mod, "train_model", real)


def same_weights(a, b) -> bool:
    """The two checkpoint folders hold bit-identical tensors."""
    x, y = (load_file(str(next(f.glob("*.safetensors")))) for f in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
