"""One pruning step of a forge cycle: score heads, select, defrag, optionally regrow by mitosis."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from forge_cuda.checkpoint import param_count
from forge_cuda.defrag import defrag, model_layout
from forge_cuda.importance import HeadScores, score_heads
from forge_cuda.mitosis import apply_mitosis, plan_mitosis
from forge_cuda.selection import select_heads


@dataclass
class PruneSettings:
    criterion: str = "taylor"
    mode: str = "auto"
    min_heads: int = 1
    mitosis_rounds: int = 0  # clone rounds per layer after pruning (one clone per kept KV group per round)
    batch_size: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def _cuda_allocated(model: nn.Module) -> int | None:
    device = next(model.parameters()).device
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def prune_once(model: nn.Module, calibration: torch.Tensor, level: float, settings: PruneSettings,
               seed: int = 0, on_phase: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Bring ``model`` to ``level`` of the BASE query heads removed (cumulative); return what happened.

    ``level`` is relative to the base model, so cycle k of n asks for level*k/n
    and each cycle removes only the difference from what is already gone.
    """
    layout = model_layout(model)
    base_total = layout.base.num_heads * layout.base.num_layers
    current = sum(layout.q_counts)
    already = 1 - current / base_total
    step = max(0.0, (level - already) / (1 - already)) if already < 1 else 0.0
    before = {"params": param_count(model), "cuda_allocated": _cuda_allocated(model),
              "q_heads": current, "kv_heads": sum(layout.kv_counts)}
    start = time.perf_counter()
    if on_phase:
        on_phase("importance")
    batches = calibration.split(settings.batch_size)
    scores = score_heads(model, batches, settings.criterion, seed=seed, progress=progress)
    if on_phase:
        on_phase("prune")
    selection = select_heads(scores, step, mode=settings.mode, min_heads=settings.min_heads)
    defrag(model, selection.layout)
    clones = 0
    if settings.mitosis_rounds > 0:
        kept = HeadScores(scores.criterion, selection.layout,
                                {i: _kept_scores(scores, selection.layout, i) for i in scores.layers},
                                scores.tokens)
        plan = plan_mitosis(kept, max_rounds=settings.mitosis_rounds)
        clones = sum(len(p) for p in plan.values())
        apply_mitosis(model, plan)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    after_layout = model_layout(model)
    return {"criterion": settings.criterion, "mode": settings.mode, "target_level": level,
            "step_fraction": step, "removed": selection.removed, "clones": clones,
            "before": before,
            "after": {"params": param_count(model), "cuda_allocated": _cuda_allocated(model),
                      "q_heads": sum(after_layout.q_counts), "kv_heads": sum(after_layout.kv_counts)},
            "scores": scores.grid().tolist(), "score_tokens": scores.tokens,
            "seconds": time.perf_counter() - start}


def _kept_scores(scores, new_layout, i: int):
    """The old scores of the heads that survived in layer i, in the new physical order."""
    old = scores.layout.layers[i].q_heads
    pos = {h: p for p, h in enumerate(old)}
    return scores.layers[i][[pos[h] for h in new_layout.layers[i].q_heads]]
