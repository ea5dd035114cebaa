"""The project entry points the GPU check calls, looked up where they live now.

The pruning wing is moving from ``forge_cuda/{pruning_step,defrag}.py`` to
``forge_cuda/pruning/`` and the CLI from ``sentinel/commands/`` to ``sentinel/cli/``;
the check must keep working on either side of those moves, so each name is
imported from the new place first, then the old one.
"""

from __future__ import annotations

import importlib


def _first(candidates: list[tuple[str, str]]):
    errors = []
    for module, name in candidates:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            errors.append(f"{module}.{name}: {e.__class__.__name__}: {e}")
    raise ImportError("; ".join(errors))


def prune_settings():
    """The options class a forge cycle's prune step takes (PruneOptions after the move, PruneSettings before)."""
    return _first([("forge_cuda.pruning.options", "PruneOptions"), ("forge_cuda.pruning.step", "PruneSettings"),
                   ("forge_cuda.pruning_step", "PruneSettings")])


def prune_once():
    return _first([("forge_cuda.pruning.step", "prune_once"), ("forge_cuda.pruning_step", "prune_once")])


def default_cycles():
    return _first([("forge_cuda.pruning.step", "default_cycles"), ("forge_cuda.pruning.options", "default_cycles"),
                   ("forge_cuda.pruning_step", "default_cycles")])


def model_layout():
    return _first([("forge_cuda.pruning.defrag", "model_layout"), ("forge_cuda.defrag", "model_layout")])


def forge_command():
    return _first([("sentinel.cli.forge", "forge_cmd"), ("sentinel.commands.forge", "forge_cmd")])


def default_target() -> float:
    return _first([("sentinel.cli.pruning_options", "DEFAULT_TARGET"),
                   ("sentinel.commands.pruning_options", "DEFAULT_TARGET")])


def dequantize_gguf():
    return _first([("sentinel.cli.resolve", "dequantize_gguf"), ("sentinel.models", "dequantize_gguf")])


# The CLI's defaults when this was written; used only when the CLI cannot be imported (and said so).
FALLBACK = {"steps": 100, "batch_size": 8, "grad_accum": 1, "seq_len": 256, "eval_tokens": 16384, "calib_windows": 32,
            "train_tokens": 400_000, "target_params": 0.75, "max_step_params": 0.10, "cycles": 3, "control": True,
            "recovery": "distill"}


def forge_defaults() -> dict:
    """The default forge from the CLI's own option defaults (so the estimate follows them), else FALLBACK."""
    try:
        return {**_cli_defaults(), "source": "sentinel forge option defaults"}
    except Exception as e:  # a CLI mid-change must not cost the GPU loan
        return {**FALLBACK, "source": f"fallback: CLI defaults unreadable ({type(e).__name__}: {e})"[:300]}


def _plain_default(param):
    """An option's default as a plain value (click 8.2+ marks an unset one, e.g. of a flag, with a sentinel)."""
    value = param.default
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return False if getattr(param, "is_flag", False) else None


def _config_defaults() -> dict:
    """Evaluation extras of the forge (out-of-domain rows, recovery curves) from ForgeConfig's own defaults."""
    import dataclasses

    from forge_cuda.forge import ForgeConfig

    fields = {f.name: f.default for f in dataclasses.fields(ForgeConfig)}
    keys = ("ood_domain", "ood_eval_tokens", "curve_points", "curve_eval_tokens")
    return {k: fields[k] for k in keys if k in fields and fields[k] is not dataclasses.MISSING}


def _cli_defaults() -> dict:
    params = {p.name: _plain_default(p) for p in forge_command().params}
    target = params.get("target_params") or default_target()
    max_step = params.get("max_step_params") or 0.10
    cycles = params.get("cycles") or default_cycles()(target, max_step)
    return {"steps": params["steps"], "batch_size": params["batch_size"], "grad_accum": params.get("grad_accum", 1),
            "seq_len": params["seq_len"], "eval_tokens": params["eval_tokens"],
            "calib_windows": params["calib_windows"], "train_tokens": params.get("train_tokens"),
            "target_params": target, "max_step_params": max_step, "cycles": cycles,
            "control": not params.get("no_control", False), "recovery": params.get("recovery", "distill"),
            **_config_defaults()}
