"""One pruning step of a forge cycle: the one-shot pipeline (forge_cuda.prune) plus optional mitosis.

Targets and levels are fractions of the BASE model, reached gradually: cycle k of n
asks for ``k/n`` of the way (a size target keeps ``1 - (1 - target) * k / n`` of the
base parameters), so each cycle removes only the difference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from forge_cuda.defrag import model_layout
from forge_cuda.distributed import from_main
from forge_cuda.importance import UnitScores, score_units
from forge_cuda.mitosis import apply_mitosis, plan_mitosis
from forge_cuda.prune import PruneOptions, prune_model
from sentinel.errors import SentinelError


@dataclass
class PruneSettings:
    criterion: str = "taylor"
    mode: str = "auto"
    min_heads: int = 1
    mitosis_rounds: int = 0  # clone rounds per layer after pruning (one clone per kept KV group per round)
    batch_size: int = 4
    target_params: float | None = None  # fraction of the base parameters the last cycle keeps
    mlp_level: float = 0.0  # fraction of the base MLP channels the last cycle removes (explicit mode)
    min_channels: float = 0.1
    channel_group: int = 64
    refit: bool = True  # least-squares refit of the readers of pruned units (forge_cuda.refit)
    balance: str = "layer"  # how head and channel scores compete for a size target (forge_cuda.units)

    def to_dict(self) -> dict:
        return asdict(self)


def default_cycles(target_params: float, max_step: float = 0.10) -> int:
    """Cycles needed so no cycle removes more than ``max_step`` of the base parameters."""
    return max(1, math.ceil(round((1.0 - target_params) / max_step, 9)))


def step_fraction(model: nn.Module, level: float) -> float:
    """Fraction of the CURRENT query heads to remove so that ``level`` of the BASE heads is gone."""
    layout = model_layout(model)
    base_total = layout.base.num_heads * layout.base.num_layers
    current = sum(layout.q_counts)
    want_kept = round(base_total * (1 - level))
    return max(0.0, (current - want_kept) / current)


def cycle_options(model: nn.Module, settings: PruneSettings, head_level: float, progress: float,
                  seed: int) -> PruneOptions:
    """The one-shot options for a cycle ``progress`` (k/n) of the way to the final target or levels."""
    if settings.target_params is not None and settings.mitosis_rounds:
        raise SentinelError("mitosis regrows parameters, so it cannot aim at --target-params; use one or the other")
    common = dict(criterion=settings.criterion, mode=settings.mode, min_heads=settings.min_heads, seed=seed,
                  min_channels=settings.min_channels, channel_group=settings.channel_group, refit=settings.refit,
                  balance=settings.balance)
    if settings.target_params is not None:
        keep = 1.0 - (1.0 - settings.target_params) * progress
        return PruneOptions(level=0.0, target_params=keep, normalize="none", **common)
    return PruneOptions(level=step_fraction(model, head_level * progress), mlp_level=settings.mlp_level * progress,
                        **common)


def prune_once(model: nn.Module, calibration: torch.Tensor, head_level: float, settings: PruneSettings,
               seed: int = 0, on_phase: Callable[[str], None] | None = None, progress: bool = True,
               cycle_progress: float = 1.0, base: dict | None = None) -> dict:
    """Bring ``model`` ``cycle_progress`` of the way to the settings' target and report it.

    ``base``: ``{"params": ..., "channels": ...}`` of the unpruned model (the fractions' reference).
    """
    base = base or {}
    options = cycle_options(model, settings, head_level, cycle_progress, seed)
    if on_phase:
        on_phase("importance")
    batches = calibration.split(settings.batch_size)
    scores = from_main(score_units(model, batches, settings.criterion,
                                   options.kinds, seed=seed, progress=progress))  # every rank prunes the same units
    report, _ = prune_model(model, batches, options, progress=progress, scores=scores,
                            base_params=base.get("params"), base_channels=base.get("channels"))
    clones = 0
    if settings.mitosis_rounds > 0:
        if on_phase:
            on_phase("prune")
        heads = scores["heads"]
        survivors = model_layout(model)
        kept = UnitScores(heads.criterion, survivors,
                          {i: _kept_scores(heads, survivors, i) for i in heads.layers}, heads.tokens)
        plan = plan_mitosis(kept, max_rounds=settings.mitosis_rounds)
        clones = sum(len(p) for p in plan.values())
        apply_mitosis(model, plan)
    return {"target_level": head_level * cycle_progress, "step_fraction": options.level,
            "target_params": options.target_params, "clones": clones, **report,
            "scores": scores["heads"].grid().tolist() if "heads" in scores else None,
            "channel_scores": _channel_summary(scores.get("channels"))}


def _channel_summary(scores: UnitScores | None) -> list | None:
    """Per layer mean channel score (the full grid is too big for report.json on real models)."""
    if scores is None:
        return None
    return [float(scores.layers[i].mean()) if i in scores.layers else None
            for i in range(scores.layout.base.num_layers)]


def _kept_scores(scores: UnitScores, survivors, i: int):
    """The scores of the heads that survived in layer i, in their new physical order."""
    pos = {h: p for p, h in enumerate(scores.layout.layers[i].q_heads)}
    return scores.layers[i][[pos[h] for h in survivors.layers[i].q_heads]]
