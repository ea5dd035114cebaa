"""Block-local distillation: each pruned decoder block learns to reproduce the teacher block's output
from the teacher block's input (Puzzletron in NVIDIA Model-Optimizer; Lillama, arXiv 2412.16719).

No LM head and no vocabulary-wide KL: every block learns from a dense hidden-size target,
and blocks are independent of each other (block i never sees the student's block i-1).
Losses, per batch: ``nmse`` = ||s - t||^2 / ||t||^2 (normalised MSE) and ``cosine`` =
mean over tokens of 1 - cos(s, t).

The least-squares refit of the pruning step (forge_cuda refit) is the zero-step case of
the same objective: it solves, in closed form, for the reader (o_proj / down_proj)
columns that keep the block's output closest to its unpruned output, with every other
weight fixed. With ``steps = 0`` this phase changes nothing and the refit is all the
block-local recovery there is; with steps, gradient descent on the whole block continues
from the refit.

Blocks run one after another on one device. Under a launcher (torchrun / accelerate,
``WORLD_SIZE`` > 1, process group initialised) block i is trained by rank ``i % world``
on its own copy of the teacher states, and its weights are then broadcast from that rank.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from forge_cuda.families import family_for
from forge_cuda.recovery.blockcache import TeacherStates
from forge_cuda.recovery.recipe import BLOCKLOCAL_LOSS, BLOCKLOCAL_LR
from sentinel.errors import SentinelError

LOSSES = ("nmse", "cosine")


def nmse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """||s - t||^2 / ||t||^2 over the whole batch (0 exactly when s == t)."""
    return (student - teacher).pow(2).sum() / teacher.pow(2).sum().clamp_min(1e-12)


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(s, t) along the hidden dimension (0 when s == t)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-12)).mean()


def block_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise SentinelError(f"unknown block-local loss {name!r}; choose from {', '.join(LOSSES)}")
    return nmse_loss if name == "nmse" else cosine_loss


@dataclass
class BlockLocalConfig:
    steps: int = 0  # optimizer steps per block (0: the refit alone)
    batch_size: int = 4
    lr: float = BLOCKLOCAL_LR
    warmup_steps: int = 2
    max_grad_norm: float = 1.0
    loss: str = BLOCKLOCAL_LOSS
    max_seconds: float | None = None  # per block, for wall-time budgets (the schedule follows the clock)
    cache_bytes: int = 2 * 2**30  # teacher states kept on disk; batches past this are recomputed
    skip_below: float = 1e-5  # a block whose first loss is this small already matches (unpruned): left alone
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _schedule(step: int, steps: int, warmup: int, elapsed: float, seconds: float | None) -> float:
    """Linear warmup, then cosine to 0 over the steps (or over the seconds, whichever runs out first)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    if seconds:
        progress = max(progress, elapsed / seconds)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _train_block(block: nn.Module, states: TeacherStates, i: int, cfg: BlockLocalConfig, loss_fn,
                 progress: bool) -> dict:
    params = [p for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    dtype = params[0].dtype
    args, kwargs = states.call(i, dtype)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    order = torch.randperm(len(states.batches), generator=torch.Generator().manual_seed(cfg.seed + 1000 * i))
    cuda = params[0].device.type == "cuda"
    losses, start = [], time.perf_counter()
    block.train()
    bar = tqdm(range(cfg.steps), desc=f"block {i}", disable=not progress, leave=False,
               total=float("inf") if cfg.max_seconds else None)
    for step in bar:
        elapsed = time.perf_counter() - start
        if cfg.max_seconds is not None and elapsed >= cfg.max_seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * _schedule(step, cfg.steps, cfg.warmup_steps, elapsed, cfg.max_seconds)
        h_in, h_out = states.pair(int(order[step % len(order)]), i)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = block(h_in.to(dtype), *args, **kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
        loss = loss_fn(out.float(), h_out)
        if step == 0 and loss.item() <= cfg.skip_below:  # Adam would turn cache rounding into full-size steps
            losses.append(loss.item())
            break
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
    block.eval()
    for p in params:
        p.requires_grad_(False)
    return {"block": i, "steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "seconds": time.perf_counter() - start}


def _owners(n: int) -> tuple[int, int]:
    """(rank, world) of a process group that is up, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _share(blocks: nn.ModuleList, world: int) -> None:
    """Every rank gets every block's trained weights from the rank that trained it."""
    import torch.distributed as dist

    for i, block in enumerate(blocks):
        for p in block.parameters():
            dist.broadcast(p.data, src=i % world)


def train_blocks(student: nn.Module, teacher: nn.Module, windows: torch.Tensor, cfg: BlockLocalConfig,
                 folder: Path, progress: bool = True,
                 on_block: Callable[[dict], None] | None = None) -> dict:
    """Train every decoder block of ``student`` (in place) toward ``teacher``'s; returns per-block stats.

    ``folder`` holds the teacher-state cache (bounded by ``cfg.cache_bytes``; kept for a resumed run).
    """
    loss_fn = block_loss(cfg.loss)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    if cfg.max_seconds is None:  # only the windows the steps will see
        windows = windows[:max(1, cfg.steps) * cfg.batch_size]
    states = TeacherStates(teacher, windows, cfg.batch_size, folder, cfg.cache_bytes)
    if cfg.max_seconds is not None and states.cached:  # on the clock: epochs over what the cache holds
        states.batches = states.batches[:states.cached]
    blocks = family_for(student.config.model_type).decoder_layers(student)
    if len(blocks) != len(states.layers):
        raise SentinelError("block-local distillation needs a student with the teacher's number of blocks")
    for p in student.parameters():
        p.requires_grad_(False)
    rank, world = _owners(len(blocks))
    stats = []
    if cfg.steps > 0:
        tic = time.perf_counter()
        states.fill()
        if cfg.max_seconds is not None:  # the cache's filling comes out of the blocks' time
            cfg = replace(cfg, max_seconds=max(0.0, cfg.max_seconds - (time.perf_counter() - tic) / len(blocks)))
        for i, block in enumerate(blocks):
            if i % world != rank:
                continue
            stats.append(_train_block(block, states, i, cfg, loss_fn, progress))
            if on_block:
                on_block({**stats[-1], "blocks": len(blocks)})
        if world > 1:
            _share(blocks, world)
    steps = max((s["steps"] for s in stats), default=0)
    b, t = states.batches[0].shape
    return {"steps": steps, "tokens": steps * b * t, "loss": cfg.loss, "blocks": stats,
            "cached_batches": states.cached, "batches": len(states.batches), "cache_bytes": states.disk_bytes()
            if states.folder.exists() else 0, "seconds": time.perf_counter() - start}
