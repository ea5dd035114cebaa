"""Calibration passes: the batches importance and refit read, and the eval-mode forward they run in.

Shared by importance.py (scores) and refit.py (Gram matrices), so both see the
same tokens in the same mode. Batches come from the calibration split only, never eval.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping

import torch
from torch import nn

from sentinel.errors import SentinelError


def unpack_batch(batch, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch is a [B, T] LongTensor (packed, no padding) or a dict with input_ids/attention_mask."""
    if isinstance(batch, Mapping):
        ids, mask = batch["input_ids"], batch.get("attention_mask")
    else:
        ids, mask = batch, None
    if ids.dim() != 2:
        raise SentinelError(f"calibration batches must be [batch, seq_len] token ids, got shape {tuple(ids.shape)}")
    return ids.to(device), (mask.to(device) if mask is not None else None)


@contextlib.contextmanager
def scoring_mode(model: nn.Module, attn: str | None = None):
    """Eval mode (no dropout), optionally another attention implementation; restored afterwards."""
    was_training, before = model.training, model.config._attn_implementation
    model.eval()
    if attn and attn != before:
        model.set_attn_implementation(attn)
    try:
        yield
    finally:
        if attn and attn != before:
            model.set_attn_implementation(before)
        model.train(was_training)


def progress_bar(batches: Iterable, desc: str, progress: bool):
    if not progress:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, unit="batch", leave=False)


def calibration_batches(tokenizer, domain: str, windows: int, seq_len: int, seed: int,
                        batch_size: int) -> list[torch.Tensor]:
    """The calibration split only (never eval), cut into [batch, seq_len] batches."""
    from forge_cuda.data import build_splits

    splits = build_splits(domain, tokenizer, seq_len=seq_len, seed=seed,
                          max_tokens={"train": seq_len, "calibration": windows * seq_len, "eval": seq_len})
    calib = splits.calibration[:windows]
    if len(calib) < windows:
        raise SentinelError(f"domain {domain!r} has only {len(calib)} calibration windows of {seq_len} tokens; "
                            "lower --calib-windows or --seq-len")
    return list(calib.split(batch_size))
