"""From measured stages to what a user plans with: the default forge's wall time and the tier per GPU size.

The wall time adds up the default forge's work at the measured rates: stage 0, then
per cycle one pruning step, the distillation and the control (each ``steps`` x
``batch_size`` x ``seq_len - 1`` tokens), the evaluations (baseline, stage 0, and three
per cycle: one-shot, forged, control; plus the out-of-domain rows and recovery curves the forge's config
asks for) and the saves (stage 0, then forged + control per
cycle). Every cycle is costed at the unpruned model's speed, so it is an upper bound
for the forged track. Shapes measured at reduced depth (the 4B) are scaled by parameter
count, and say so.
"""

from __future__ import annotations

GiB = 2**30
GPU_SIZES_GIB = (8, 12, 16, 24, 48, 80, 141)
MARGIN = 0.9  # the forge's own tier rule keeps 10% of the GPU free (forge_cuda/tiers.py)
MODES = ("full", "lora", "nf4")


def _ok(stage: dict | None) -> bool:
    return bool(stage) and stage.get("status") == "ok"


def scale_of(run: dict) -> float:
    """Multiplier from the measured shape to the full-depth model (1.0 when measured at full depth)."""
    return run["full_params"] / run["params"] if run.get("params") and run.get("full_params") else 1.0


def extra_eval_tokens(defaults: dict) -> int:
    """Out-of-domain rows (baseline, stage 0, forged per cycle) and recovery-curve points (per cycle and track:
    one before recovery plus ``curve_points``), where the forge's config has them."""
    cycles, tracks = defaults["cycles"], 2 if defaults.get("control", True) else 1
    ood = defaults.get("ood_eval_tokens", 0) * (2 + cycles) if defaults.get("ood_domain") else 0
    curve = defaults.get("curve_eval_tokens", 0) * (1 + defaults.get("curve_points", 0)) * tracks * cycles
    return ood + curve


def forge_seconds(run: dict, defaults: dict, save: dict | None = None) -> dict | None:
    """The default forge's wall time from one run's stages (None when a stage it needs is missing).

    ``save``: the save stage to use when the run has none (saves are measured once per shape, in its full run).
    """
    st = dict(run.get("stages", {}))
    if not _ok(st.get("save")) and save is not None:
        st["save"] = save
    need = ("eval", "stage0", "prune", "distill", "control")
    if not all(_ok(st.get(s)) for s in need):
        return None
    scale, cycles = scale_of(run), defaults["cycles"]
    tokens = defaults["steps"] * defaults["batch_size"] * defaults.get("grad_accum", 1) * (defaults["seq_len"] - 1)
    train = {s: tokens / st[s]["tokens_per_s"] * scale for s in ("stage0", "distill", "control")}
    control = defaults.get("control", True)
    evals = (2 + 3 * cycles) if control else (2 + 2 * cycles)
    eval_tokens = defaults["eval_tokens"] * evals + extra_eval_tokens(defaults)
    eval_s = eval_tokens / st["eval"]["tokens_per_s"] * scale
    prune_s = st["prune"]["seconds"] * scale * defaults["calib_windows"] / max(st["prune"]["windows"], 1) * cycles
    save_s = st["save"]["seconds"] * scale * (1 + 2 * cycles) if _ok(st.get("save")) else 0.0
    control_s = train["control"] * cycles if defaults.get("control", True) else 0.0
    parts = {"stage0": train["stage0"], "distill": train["distill"] * cycles, "control": control_s,
             "prune": prune_s, "eval": eval_s, "save": save_s}
    return {"seconds": sum(parts.values()), "parts": parts, "train_tokens_per_stage": tokens, "eval_tokens": eval_tokens,
            "scaled_by_params": scale != 1.0, "scale": scale}


def estimates(runs: list[dict], defaults: dict) -> dict:
    """Per shape and mode: distillation tokens/s and the default forge's estimated wall time."""
    out = {}
    saves = {r["shape"]: r["stages"]["save"] for r in runs if _ok(r.get("stages", {}).get("save"))}
    for run in runs:
        if run.get("status") in ("skipped", "pending"):
            continue
        distill = run.get("stages", {}).get("distill", {})
        per = out.setdefault(run["shape"], {})
        per[run["mode"]] = {"distill_tokens_per_s": distill.get("tokens_per_s") if _ok(distill) else None,
                            "distill_tokens_per_s_full_depth": (distill["tokens_per_s"] / scale_of(run)
                                                                if _ok(distill) else None),
                            "default_forge": forge_seconds(run, defaults, saves.get(run["shape"]))}
    return out


def peak_bytes(run: dict) -> int | None:
    peaks = [s.get("peak_bytes") for s in run.get("stages", {}).values() if _ok(s)]
    if not peaks or None in peaks:
        return None
    return int(max(peaks) * scale_of(run))


def tier_table(runs: list[dict]) -> dict:
    """Measured peak per shape and mode, and for each GPU size the best mode that fits under the margin."""
    from forge_cuda.tiers import choose_tier

    peaks: dict[str, dict] = {}
    params: dict[str, int] = {}
    for run in runs:
        peaks.setdefault(run["shape"], {})[run["mode"]] = peak_bytes(run)
        if run.get("full_params"):
            params[run["shape"]] = run["full_params"]
    rows = []
    for size in GPU_SIZES_GIB:
        budget = size * GiB * MARGIN
        row = {"gpu_gib": size, "models": {}}
        for shape, by_mode in peaks.items():
            fits = [m for m in MODES if by_mode.get(m) is not None and by_mode[m] <= budget]
            rule = choose_tier(params[shape], "cuda", size * GiB).name if shape in params else None
            row["models"][shape] = {"best_measured": fits[0] if fits else None, "fits": fits, "forge_rule": rule}
        rows.append(row)
    return {"margin": MARGIN, "peak_bytes": peaks, "full_params": params, "by_gpu": rows}
