"""Perplexity on packed held-out windows: the one evaluator every published row goes through.

Windows are packed without padding, so every next-token target counts; the
loss is summed per token and divided once, never averaged per batch.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 8, desc: str = "eval",
               progress: bool = True) -> dict:
    """Token-level NLL and perplexity of ``model`` on [n, T] windows (targets: tokens 1..T-1)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    start = time.perf_counter()
    for i in tqdm(range(0, len(windows), batch_size), desc=desc, disable=not progress, leave=False):
        batch = windows[i:i + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        targets = batch[:, 1:]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        total_nll += nll.item()
        total_tokens += targets.numel()
    model.train(was_training)
    loss = total_nll / total_tokens
    return {"loss": loss, "ppl": math.exp(loss), "tokens": total_tokens, "windows": len(windows),
            "seq_len": windows.shape[1], "seconds": time.perf_counter() - start}
