"""One-shot pruning without training: score units on calibration windows, select, defrag, save.

This is what FLAP/LLM-Pruner users try first, and the baseline a forge run must beat.
Two ways to say how much: a size target (``target_params``: fraction of the base
model's parameters to keep, allocated over heads and MLP channels by forge_cuda.units)
or explicit per-kind levels (``level`` for query heads, ``mlp_level`` for channels).
The result is a contract-format checkpoint plus ``prune_report.json``/``.md`` and the
importance scores (``importance/{scores,channel_scores}_<criterion>.{json,npy}``) for plots.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from forge_cuda.checkpoint import load_model, load_tokenizer, param_count, save_model
from forge_cuda.defrag import defrag, model_layout
from forge_cuda.families import family_for
from forge_cuda.importance import CRITERIA, NORMALIZATIONS, UnitScores, score_units
from forge_cuda.selection import MODES, SCOPES, select_heads
from forge_cuda.units import BALANCES, UnitSelector, channel_group_for, unit_costs
from sentinel.atomic import write_json
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout


@dataclass(frozen=True)
class PruneOptions:
    criterion: str = "taylor"
    level: float = 0.33  # query heads removed (explicit mode)
    mode: str = "auto"
    min_heads: int = 1
    scope: str = "global"
    normalize: str = "l2"
    seed: int = 0
    target_params: float | None = None  # fraction of the base parameters to keep (size-target mode)
    mlp_level: float = 0.0  # MLP channels removed (explicit mode)
    min_channels: float = 0.1  # fraction of the base MLP width every layer keeps
    channel_group: int = 64  # channels removed together (shrunk for tiny models)
    refit: bool = False  # least-squares refit of o_proj/down_proj on calibration activations (forge_cuda.refit)
    balance: str = "layer"  # size target: how head and channel scores are made comparable (forge_cuda.units)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The unit kinds these options prune (and so must score)."""
        if self.target_params is not None:
            return ("heads", "channels")
        return tuple(k for k, on in (("heads", self.level > 0), ("channels", self.mlp_level > 0)) if on) or ("heads",)

    def __post_init__(self):
        """Fail on bad options before minutes of loading and scoring, not after."""
        choices = {"criterion": CRITERIA, "mode": MODES, "scope": SCOPES, "normalize": NORMALIZATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SentinelError(f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(allowed)}")
        if not 0.0 <= self.level < 1.0:
            raise SentinelError(f"level must be a fraction in [0, 1), got {self.level}")
        if self.min_heads < 1:
            raise SentinelError("min_heads must be at least 1")
        if self.target_params is not None and not 0.0 < self.target_params <= 1.0:
            raise SentinelError(f"target_params must be a fraction in (0, 1], got {self.target_params}")
        if not 0.0 <= self.mlp_level < 1.0:
            raise SentinelError(f"mlp_level must be a fraction in [0, 1), got {self.mlp_level}")
        if not 0.0 < self.min_channels <= 1.0:
            raise SentinelError(f"min_channels must be a fraction in (0, 1], got {self.min_channels}")
        if self.channel_group < 1:
            raise SentinelError("channel_group must be at least 1")
        if self.balance not in BALANCES:
            raise SentinelError(f"unknown balance {self.balance!r}; choose from {', '.join(BALANCES)}")
        if self.criterion == "entropy" and "channels" in self.kinds:
            raise SentinelError("entropy scores attention heads only; use taylor or activation to prune MLP channels")


def kv_bytes_per_token(model: nn.Module, layout: HeadLayout, bytes_per_value: int) -> int:
    """K and V cache bytes one token costs across the attention layers (linear-attention state excluded)."""
    family = family_for(model.config.model_type)
    return sum(2 * layout.layers[i].num_kv_heads * layout.base.head_dim * bytes_per_value
               for i in family.attention_layers(model))


def _cuda_allocated(model: nn.Module) -> int | None:
    device = next(model.parameters()).device
    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.empty_cache()
    return int(torch.cuda.memory_allocated(device))


def _layer_rows(model: nn.Module, before: HeadLayout, after: HeadLayout) -> list[dict]:
    rows = []
    for i in range(len(after.layers)):
        a, b = before.layers[i], after.layers[i]
        rows.append({"layer": i, "q_before": a.num_heads, "q_after": b.num_heads,
                     "kv_before": a.num_kv_heads, "kv_after": b.num_kv_heads,
                     "mlp_before": before.mlp_widths[i], "mlp_after": after.mlp_widths[i],
                     "q_heads": list(b.q_heads), "kv_heads": list(b.kv_heads)})
    return rows


def _selector(model: nn.Module, layout: HeadLayout, scores: dict[str, UnitScores], options: PruneOptions,
              heads: bool) -> UnitSelector:
    width = layout.base.intermediate_size or 1
    return UnitSelector(layout, unit_costs(model), scores.get("heads") if heads else None, scores.get("channels"),
                        mode=options.mode, min_heads=options.min_heads,
                        min_channels=max(1, round(options.min_channels * width)),
                        channel_group=channel_group_for(layout, options.channel_group),
                        balance=options.balance)


def select_layout(model: nn.Module, scores: dict[str, UnitScores], options: PruneOptions,
                  base_params: int | None = None, base_channels: int | None = None) -> tuple[HeadLayout, dict]:
    """The layout ``options`` ask for, from scores of the current model; plus what was asked and achieved.

    ``base_params``/``base_channels``: the unpruned model's totals (targets and levels are
    fractions of the base, so gradual cycles each remove only the difference).
    """
    layout, params_now = model_layout(model), param_count(model)
    info: dict = {}
    if options.target_params is not None:
        goal = round(options.target_params * (base_params or params_now))
        sel = _selector(model, layout, scores, options, heads=True).select(max(0, params_now - goal))
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
            sel = _selector(model, layout, scores, options, heads=False).select_count("channels", want)
            layout = sel.layout
        info["mlp_channels"] = {"total": total, "requested_removed": round(options.mlp_level * total),
                                "removed": total - sum(layout.mlp_widths)}
    return layout, info


def prune_model(model: nn.Module, batches: Iterable, options: PruneOptions, progress: bool = True,
                scores: dict[str, UnitScores] | None = None, base_params: int | None = None,
                base_channels: int | None = None) -> tuple[dict, dict[str, UnitScores]]:
    """Prune ``model`` in place; returns the report and the raw scores (per unit kind) it was pruned by.

    Pass ``scores`` to prune by scores measured elsewhere (e.g. on the main process of a DDP run).
    """
    dtype_bytes = next(model.parameters()).element_size()
    before, params_before, mem_before = model_layout(model), param_count(model), _cuda_allocated(model)
    t0 = time.perf_counter()
    if scores is None:
        scores = score_units(model, batches, options.criterion, options.kinds, seed=options.seed, progress=progress)
    t1 = time.perf_counter()
    target, selected = select_layout(model, scores, options, base_params, base_channels)
    if options.refit:
        from forge_cuda.refit import collect_grams, refit_readers

        if not batches:
            raise SentinelError("refit needs calibration batches")
        selected["refit_readers"] = refit_readers(model, collect_grams(model, batches, options.kinds, progress),
                                                  before, target)
    t2 = time.perf_counter()
    after = defrag(model, target)
    t3 = time.perf_counter()
    total_q = sum(before.layers[i].num_heads for i in family_for(model.config.model_type).attention_layers(model))
    removed_q = sum(before.q_counts) - sum(after.q_counts)
    report = {
        "options": asdict(options),
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
        "calibration_tokens": max(s.tokens for s in scores.values()),
        "seconds": {"score": round(t1 - t0, 3), "select": round(t2 - t1, 3), "defrag": round(t3 - t2, 3)},
        "layers": _layer_rows(model, before, after),
    }
    return report, scores


def report_markdown(report: dict) -> str:
    """A short human-readable companion to prune_report.json."""
    o, p, kv = report["options"], report["params"], report["kv_bytes_per_token"]["fp16"]
    q, ch = report["query_heads"], report["mlp_channels"]
    how = (f"target **{o['target_params']:g}** of the base parameters" if o.get("target_params") is not None
           else f"level {o['level']} (heads), {o.get('mlp_level', 0)} (MLP channels)")
    lines = [
        f"# Prune report: {report.get('model', '')}",
        "",
        f"criterion **{o['criterion']}**, {how}; removed {q['removed']}/{q['total']} query heads and "
        f"{ch['removed']}/{ch['total']} MLP channels; mode {o['mode']}, "
        f"calibration tokens {report['calibration_tokens']}",
        "",
        "| | before | after |",
        "|---|---:|---:|",
        f"| parameters | {p['before']:,} | {p['after']:,} |",
        f"| KV bytes/token (fp16) | {kv['before']:,} | {kv['after']:,} |",
        "",
        "| layer | query heads | KV heads | MLP channels |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['layer']} | {r['q_after']}/{r['q_before']} | {r['kv_after']}/{r['kv_before']} | "
              f"{r['mlp_after']}/{r['mlp_before']} |" for r in report["layers"]]
    return "\n".join(lines) + "\n"


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


def run_prune(model_name: str, out: str | Path, options: PruneOptions, domain: str = "code",
              calib_windows: int = 32, seq_len: int = 256, batch_size: int = 4, force: bool = False,
              dtype: torch.dtype = torch.float32, progress: bool = True) -> dict:
    """``sentinel prune``: resolve, load, prune, save checkpoint + report atomically; returns the report."""
    from forge_cuda.families import supported_model_types
    from sentinel.atomic import check_output_dir
    from sentinel.cli.resolve import resolve_model
    from sentinel.validate import check_model_folder

    out = Path(out)
    start = time.perf_counter()
    source = resolve_model(model_name)
    check_model_folder(source, supported_model_types())
    check_output_dir(out, inputs=[source], force=force)  # never replaces its own input, even with --force
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(source, dtype=dtype, device=device)
    tokenizer = load_tokenizer(source)
    loaded = time.perf_counter()
    batches = [] if options.criterion in ("magnitude", "random") and not options.refit else calibration_batches(
        tokenizer, domain, calib_windows, seq_len, options.seed, batch_size)
    report, scores = prune_model(model, batches, options, progress=progress)
    report = {"model": model_name, "source": str(source), "domain": domain if batches else None,
              "calibration_windows": len(batches and torch.cat(batches)), "seq_len": seq_len,
              "device": device, **report}
    report["seconds"] = {"load": round(loaded - start, 3), **report["seconds"]}

    def extra(tmp: Path) -> None:
        for kind_scores in scores.values():
            kind_scores.save(tmp / "importance")
        write_json(tmp / "prune_report.json", report)
        (tmp / "prune_report.md").write_text(report_markdown(report))

    save_model(model, out, tokenizer, force=force, extra=extra)
    report["seconds"]["total"] = round(time.perf_counter() - start, 3)
    write_json(out / "prune_report.json", report)
    return report
