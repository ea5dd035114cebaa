"""The prune step: score, search, refit, defrag (and mitosis) — what `sentinel prune` and every forge cycle run.

``prune_model`` is the step itself (one shot, in place, with its report);
``prune_once`` is a forge cycle's use of it: targets and levels are fractions of
the BASE model, reached gradually, so cycle k of n asks for ``k/n`` of the way (a
size target keeps ``1 - (1 - target) * k / n`` of the base parameters) and each
cycle removes only the difference; mitosis may regrow heads afterwards.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from forge_cuda.checkpoint import param_count
from forge_cuda.distributed import from_main
from forge_cuda.families import family_for
from forge_cuda.pruning.defrag import defrag, model_layout
from forge_cuda.pruning.importance import UnitScores, score_units
from forge_cuda.pruning.mitosis import apply_mitosis, plan_mitosis
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.search import greedy_search, select_heads
from forge_cuda.pruning.space import channel_group_for, kv_bytes_per_token, unit_costs
from forge_cuda.vocab.part import VocabPart
from forge_cuda.vocab.plan import VocabPlan
from forge_cuda.vocab.surgery import restrict_vocab
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout


def _greedy(model: nn.Module, layout: HeadLayout, scores: dict[str, UnitScores], options: PruneOptions,
            heads: bool, extra: Sequence = ()):
    width = layout.base.intermediate_size or 1
    return greedy_search(layout, unit_costs(model), scores.get("heads") if heads else None, scores.get("channels"),
                         mode=options.mode, min_heads=options.min_heads,
                         min_channels=max(1, round(options.min_channels * width)),
                         channel_group=channel_group_for(layout, options.channel_group), balance=options.balance,
                         extra=extra)


def select_layout(model: nn.Module, scores: dict[str, UnitScores], options: PruneOptions,
                  base_params: int | None = None, base_channels: int | None = None,
                  vocab: VocabPlan | None = None) -> tuple[HeadLayout, dict]:
    """The layout ``options`` ask for, from scores of the current model; plus what was asked and achieved.

    ``base_params``/``base_channels``: the unpruned model's totals (targets and levels are
    fractions of the base, so gradual cycles each remove only the difference). ``vocab``: the
    token rows the vocabulary policy lets go, one free move of the same search (rows the domain
    never uses go first; heads and channels supply the rest of a size target).
    """
    layout, params_now = model_layout(model), param_count(model)
    info: dict = {}
    if vocab is not None and vocab.removed_rows:
        info["vocab"] = vocab.to_dict()
    if options.target_params is not None:
        goal = round(options.target_params * (base_params or params_now))
        extra = [VocabPart(vocab)] if vocab is not None and vocab.removed_rows else []
        sel = _greedy(model, layout, scores, options, heads=True, extra=extra).select(max(0, params_now - goal))
        info["target"] = {"params_goal": goal, "requested_removed": sel.requested, "removed": sel.removed,
                          "moves": sel.moves, "units_removed": sel.units}
        return sel.layout, info
    if options.level > 0:
        heads = select_heads(scores["heads"].normalized(options.normalize), options.level, mode=options.mode,
                             min_heads=options.min_heads, scope=options.scope)
        layout = heads.layout
        info["query_heads"] = {"total": heads.total, "requested_removed": heads.requested,
                               "removed": heads.removed, "achieved_level": heads.removed / max(heads.total, 1)}
    if options.mlp_level > 0:
        total = base_channels or sum(layout.mlp_widths)
        want = round(options.mlp_level * total) - (total - sum(layout.mlp_widths))
        if want > 0:
            layout = _greedy(model, layout, scores, options, heads=False).select_count("channels", want).layout
        info["mlp_channels"] = {"total": total, "requested_removed": round(options.mlp_level * total),
                                "removed": total - sum(layout.mlp_widths)}
    return layout, info


def _cuda_allocated(model: nn.Module) -> int | None:
    device = next(model.parameters()).device
    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.empty_cache()
    return int(torch.cuda.memory_allocated(device))


def _layer_rows(before: HeadLayout, after: HeadLayout) -> list[dict]:
    rows = []
    for i in range(len(after.layers)):
        a, b = before.layers[i], after.layers[i]
        rows.append({"layer": i, "q_before": a.num_heads, "q_after": b.num_heads,
                     "kv_before": a.num_kv_heads, "kv_after": b.num_kv_heads,
                     "mlp_before": before.mlp_widths[i], "mlp_after": after.mlp_widths[i],
                     "q_heads": list(b.q_heads), "kv_heads": list(b.kv_heads)})
    return rows


def _report(model: nn.Module, options: PruneOptions, selected: dict, before: HeadLayout, after: HeadLayout,
            params_before: int, mem_before: int | None) -> dict:
    dtype_bytes = next(model.parameters()).element_size()
    total_q = sum(before.layers[i].num_heads for i in family_for(model.config.model_type).attention_layers(model))
    removed_q = sum(before.q_counts) - sum(after.q_counts)
    return {
        "options": options.to_dict(),
        **selected,
        "query_heads": {"total": total_q, "removed": removed_q, "achieved_level": removed_q / max(total_q, 1),
                        **selected.get("query_heads", {})},
        "mlp_channels": {"total": sum(before.mlp_widths), "removed": sum(before.mlp_widths) - sum(after.mlp_widths),
                         **selected.get("mlp_channels", {})},
        "layout_summary": after.summary(),
        "params": {"before": params_before, "after": param_count(model)},
        "kv_bytes_per_token": {
            "fp16": {"before": kv_bytes_per_token(model, before, 2), "after": kv_bytes_per_token(model, after, 2)},
            "checkpoint_dtype": {"dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                                 "before": kv_bytes_per_token(model, before, dtype_bytes),
                                 "after": kv_bytes_per_token(model, after, dtype_bytes)}},
        "cuda_memory_allocated": {"before": mem_before, "after": _cuda_allocated(model)},
    }


def prune_model(model: nn.Module, batches: Iterable, options: PruneOptions, progress: bool = True,
                scores: dict[str, UnitScores] | None = None, base_params: int | None = None,
                base_channels: int | None = None, vocab: VocabPlan | None = None) -> tuple[dict, dict[str, UnitScores]]:
    """Prune ``model`` in place; returns the report and the raw scores (per unit kind) it was pruned by.

    Pass ``scores`` to prune by scores measured elsewhere (e.g. on the main process of a DDP run).
    ``vocab`` (forge_cuda.vocab.plan_vocab): token rows removed in the same step, after the defrag;
    the caller saves the matching trimmed tokenizer.
    """
    before, params_before, mem_before = model_layout(model), param_count(model), _cuda_allocated(model)
    t0 = time.perf_counter()
    if scores is None:
        scores = score_units(model, batches, options.criterion, options.kinds, seed=options.seed, progress=progress)
    t1 = time.perf_counter()
    target, selected = select_layout(model, scores, options, base_params, base_channels, vocab)
    if options.refit:
        from forge_cuda.pruning.refit import collect_grams, refit_readers

        if not batches:
            raise SentinelError("refit needs calibration batches")
        selected["refit_readers"] = refit_readers(model, collect_grams(model, batches, options.kinds, progress),
                                                  before, target)
    t2 = time.perf_counter()
    after = defrag(model, target)
    if vocab is not None and vocab.removed_rows:
        restrict_vocab(model, vocab.kept)
        after = model_layout(model)
    t3 = time.perf_counter()
    report = _report(model, options, selected, before, after, params_before, mem_before)
    report["calibration_tokens"] = max(s.tokens for s in scores.values())
    report["seconds"] = {"score": round(t1 - t0, 3), "select": round(t2 - t1, 3), "defrag": round(t3 - t2, 3)}
    report["layers"] = _layer_rows(before, after)
    return report, scores


# --- a forge cycle ---------------------------------------------------------------------------------
def default_cycles(target_params: float, max_step: float = 0.10, free: float = 0.0) -> int:
    """Cycles needed so no cycle removes more than ``max_step`` of the base parameters in heads and
    channels; ``free`` (fraction of the base) is what the vocabulary policy gives away, which costs
    the domain nothing and so paces no cycle."""
    return max(1, math.ceil(round((1.0 - free - target_params) / max_step, 9)))


def step_fraction(model: nn.Module, level: float) -> float:
    """Fraction of the CURRENT query heads to remove so that ``level`` of the BASE heads is gone."""
    layout = model_layout(model)
    base_total = layout.base.num_heads * layout.base.num_layers
    current = sum(layout.q_counts)
    want_kept = round(base_total * (1 - level))
    return max(0.0, (current - want_kept) / current)


def cycle_options(model: nn.Module, options: PruneOptions, head_level: float, progress: float,
                  seed: int, free: float = 0.0) -> PruneOptions:
    """The one-shot options for a cycle ``progress`` (k/n) of the way to the final target or levels.

    ``free``: the fraction of the base the vocabulary policy removes (taken whole by the first
    cycle); a size target then paces only the heads and channels that remain to be cut."""
    common = dict(seed=seed, mitosis_rounds=0)  # mitosis runs after the step (prune_once), not inside it
    if options.target_params is not None:
        start = 1.0 - free
        keep = start - max(0.0, start - options.target_params) * progress
        return dataclasses.replace(options, level=0.0, target_params=keep, normalize="none", **common)
    return dataclasses.replace(options, level=step_fraction(model, head_level * progress),
                               mlp_level=options.mlp_level * progress, **common)


def prune_once(model: nn.Module, calibration: torch.Tensor, head_level: float, options: PruneOptions,
               seed: int = 0, on_phase: Callable[[str], None] | None = None, progress: bool = True,
               cycle_progress: float = 1.0, base: dict | None = None, vocab: VocabPlan | None = None) -> dict:
    """Bring ``model`` ``cycle_progress`` of the way to the options' target and report it.

    ``head_level``: the final fraction of base query heads removed (explicit mode).
    ``base``: ``{"params": ..., "channels": ..., "free": ...}`` of the unpruned model (the fractions'
    reference; ``free``: the fraction the vocabulary policy removes, see cycle_options).
    ``vocab``: token rows removed in this step (see prune_model).
    """
    base = base or {}
    cycle = cycle_options(model, options, head_level, cycle_progress, seed, free=base.get("free", 0.0))
    if on_phase:
        on_phase("importance")
    batches = calibration.split(options.batch_size)
    scores = from_main(score_units(model, batches, options.criterion,
                                   cycle.kinds, seed=seed, progress=progress))  # every rank prunes the same units
    report, _ = prune_model(model, batches, cycle, progress=progress, scores=scores,
                            base_params=base.get("params"), base_channels=base.get("channels"), vocab=vocab)
    clones = 0
    if options.mitosis_rounds > 0:
        if on_phase:
            on_phase("prune")
        heads = scores["heads"]
        survivors = model_layout(model)
        kept = UnitScores(heads.criterion, survivors,
                          {i: _kept_scores(heads, survivors, i) for i in heads.layers}, heads.tokens)
        plan = plan_mitosis(kept, max_rounds=options.mitosis_rounds)
        clones = sum(len(p) for p in plan.values())
        apply_mitosis(model, plan)
    return {"target_level": head_level * cycle_progress, "step_fraction": cycle.level,
            "target_params": cycle.target_params, "clones": clones, **report,
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
