"""The pruning options ``prune`` and ``forge`` share, defined once so they cannot drift apart.

How much to remove is said one of two ways: a size target (``--target-params`` or
``--target-bytes``, allocated over heads and MLP channels by importance per
parameter) or explicit per-kind levels (``--prune-level`` for query heads,
``--mlp-level`` for MLP channels). With neither, the target is 0.75 of the base
parameters.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from sentinel.errors import SentinelError

CRITERIA = ["taylor", "activation", "entropy", "magnitude", "random"]
DEFAULT_TARGET = 0.75
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}

_OPTIONS = [
    click.option("--target-params", type=click.FloatRange(0, 1, min_open=True), default=None,
                  help=f"Fraction of the base model's parameters to keep, split over heads and MLP channels by "
                       f"importance per parameter [default: {DEFAULT_TARGET} unless a level is given]."),
    click.option("--target-bytes", default=None,
                  help="Size to reach in fp16 bytes (e.g. 200MB, 0.2GiB); converted to --target-params."),
    click.option("--prune-level", type=click.FloatRange(0, 1, max_open=True), default=None,
                  help="Explicit mode: fraction of the base query heads to remove (instead of a size target)."),
    click.option("--mlp-level", type=click.FloatRange(0, 1, max_open=True), default=None,
                  help="Explicit mode: fraction of the base MLP channels to remove (instead of a size target)."),
    click.option("--criterion", type=click.Choice(CRITERIA), default="taylor", show_default=True,
                  help="Importance criterion (entropy scores heads only; see docs/PRUNING.md)."),
    click.option("--mode", type=click.Choice(["auto", "query", "group"]), default="auto", show_default=True,
                  help="query: keep KV heads; group: remove whole KV groups; auto: both."),
    click.option("--min-heads", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Query heads every layer keeps at least."),
    click.option("--min-channels", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
                  help="Fraction of the base MLP width every layer keeps at least."),
    click.option("--channel-group", type=click.IntRange(min=1), default=64, show_default=True,
                  help="MLP channels removed together (64 keeps widths quantizable in groups of 64)."),
    click.option("--balance", type=click.Choice(["layer", "kind", "none"]), default="layer", show_default=True,
                  help="Size target: how head and channel scores are made comparable (docs/PRUNING.md)."),
    click.option("--refit/--no-refit", default=True, show_default=True,
                  help="Refit o_proj/down_proj by least squares on calibration activations after each prune."),
]


_DATA_OPTIONS = [
    click.option("--domain", default="code", show_default=True,
                  help="Data: code | docs | a .txt/.jsonl file | a folder | a datasets name (online)."),
    click.option("--seq-len", type=click.IntRange(min=2), default=256, show_default=True,
                  help="Tokens per window (calibration, training and evaluation)."),
    click.option("--calib-windows", type=click.IntRange(min=1), default=32, show_default=True,
                  help="Calibration windows for importance and refit (calibration split, never eval)."),
    click.option("--seed", type=int, default=0, show_default=True,
                  help="Seed for the data split, training and random scores."),
]


def _apply(options, command):
    for option in reversed(options):
        command = option(command)
    return command


def pruning_options(command):
    """Decorate a click command with the shared pruning options."""
    return _apply(_OPTIONS, command)


def data_options(command):
    """Decorate a click command with the shared data options (--domain, --seq-len, --calib-windows, --seed)."""
    return _apply(_DATA_OPTIONS, command)


def parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]i?b?|b)?\s*", text.lower())
    if not match:
        raise SentinelError(f"--target-bytes {text!r} is not a size (use e.g. 200MB or 0.2GiB)")
    unit = match.group(2) or ""
    unit = unit if unit.endswith("b") or unit == "" else unit + "b"
    return int(float(match.group(1)) * _UNITS[unit])


def size_target(model_path: Path, target_params: float | None, target_bytes: str | None,
                prune_level: float | None, mlp_level: float | None) -> dict:
    """Resolve the size flags to ``{target_params, level, mlp_level}``; one error line for contradictions."""
    from sentinel.weights import header_param_count

    explicit = prune_level is not None or mlp_level is not None
    if target_params is not None and target_bytes is not None:
        raise SentinelError("give --target-params or --target-bytes, not both")
    if explicit and (target_params is not None or target_bytes is not None):
        raise SentinelError("give a size target (--target-params/--target-bytes) or explicit levels "
                            "(--prune-level/--mlp-level), not both")
    if explicit:
        return {"target_params": None, "level": prune_level or 0.0, "mlp_level": mlp_level or 0.0}
    if target_bytes is not None:
        params = header_param_count(model_path)
        want = parse_bytes(target_bytes) / 2
        if not 0 < want <= params:
            raise SentinelError(f"--target-bytes {target_bytes} is not between 0 and the model's fp16 size "
                                f"({2 * params:,} bytes)")
        target_params = want / params
    return {"target_params": target_params if target_params is not None else DEFAULT_TARGET,
            "level": 0.0, "mlp_level": 0.0}
