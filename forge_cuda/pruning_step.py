"""One pruning step of a forge cycle: the one-shot pipeline (forge_cuda.prune) plus optional mitosis."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from forge_cuda.defrag import model_layout
from forge_cuda.distributed import from_main
from forge_cuda.importance import UnitScores, score_heads
from forge_cuda.mitosis import apply_mitosis, plan_mitosis
from forge_cuda.prune import PruneOptions, prune_model


@dataclass
class PruneSettings:
    criterion: str = "taylor"
    mode: str = "auto"
    min_heads: int = 1
    mitosis_rounds: int = 0  # clone rounds per layer after pruning (one clone per kept KV group per round)
    batch_size: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def step_fraction(model: nn.Module, level: float) -> float:
    """Fraction of the CURRENT query heads to remove so that ``level`` of the BASE heads is gone."""
    layout = model_layout(model)
    base_total = layout.base.num_heads * layout.base.num_layers
    current = sum(layout.q_counts)
    want_kept = round(base_total * (1 - level))
    return max(0.0, (current - want_kept) / current)


def prune_once(model: nn.Module, calibration: torch.Tensor, level: float, settings: PruneSettings,
               seed: int = 0, on_phase: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Bring ``model`` to ``level`` of the base query heads removed (cumulative) and report it.

    Cycle k of n asks for level*k/n; each cycle removes only the difference.
    """
    step = step_fraction(model, level)
    if on_phase:
        on_phase("importance")
    options = PruneOptions(criterion=settings.criterion, level=step, mode=settings.mode,
                           min_heads=settings.min_heads, seed=seed)
    scores = from_main(score_heads(model, calibration.split(settings.batch_size), settings.criterion,
                                   seed=seed, progress=progress))  # every rank prunes the same heads
    report, _ = prune_model(model, None, options, progress=progress, scores=scores)
    clones = 0
    if settings.mitosis_rounds > 0:
        if on_phase:
            on_phase("prune")
        survivors = model_layout(model)
        kept = UnitScores(scores.criterion, survivors,
                          {i: _kept_scores(scores, survivors, i) for i in scores.layers}, scores.tokens)
        plan = plan_mitosis(kept, max_rounds=settings.mitosis_rounds)
        clones = sum(len(p) for p in plan.values())
        apply_mitosis(model, plan)
    return {"target_level": level, "step_fraction": step, "clones": clones, **report,
            "scores": scores.grid().tolist()}


def _kept_scores(scores: UnitScores, survivors, i: int):
    """The scores of the heads that survived in layer i, in their new physical order."""
    pos = {h: p for p, h in enumerate(scores.layout.layers[i].q_heads)}
    return scores.layers[i][[pos[h] for h in survivors.layers[i].q_heads]]
