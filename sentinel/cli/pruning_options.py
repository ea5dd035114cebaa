"""The pruning options ``prune`` and ``forge`` share, defined once so they cannot drift apart.

How much to remove is said one of two ways: a size target (``--target-params`` or
``--target-bytes``, allocated over heads and MLP channels by importance per
parameter) or explicit per-kind levels (``--prune-level`` for query heads,
``--mlp-level`` for MLP channels). With neither, the target is 0.75 of the base
parameters. Commands receive the flags grouped (``pruning: PruningFlags``,
``data: DataFlags``); ``PruningFlags.options`` builds the validated
forge_cuda.pruning.options.PruneOptions before any model is resolved or loaded.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import click

from sentinel.errors import SentinelError

if TYPE_CHECKING:
    from forge_cuda.pruning.options import PruneOptions

# forge_cuda.pruning.options.CRITERIA (tests/test_forge_options.py checks they agree); not imported here,
# since importing forge_cuda imports torch and the CLI must start fast
CRITERIA = ["taylor", "activation", "entropy", "magnitude", "random"]
DEFAULT_TARGET = 0.75
DEFAULT_VOCAB = "domain"

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
    click.option("--vocab", default=DEFAULT_VOCAB, show_default=True,
                  help="Token rows to keep: domain (every token the domain's train + calibration text uses), "
                       "keep (the whole vocabulary), or a minimum coverage of those tokens such as 0.999. "
                       "Removed rows count toward the size target first; the tokenizer is trimmed to match "
                       "[default: keep with --keep-vision]."),
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


def _names(options) -> list[str]:
    """The parameter names click gives ``options``."""
    def probe():
        pass
    _apply(options, probe)
    return [p.name for p in probe.__click_params__]


def option_group(name: str, options: list, build):
    """Decorate a click command with ``options`` and hand it one ``name`` argument: ``build(**their values)``.

    This keeps command bodies short: they receive a few objects, not dozens of flags.
    """
    def decorate(command):
        names = _names(options)

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            kwargs[name] = build(**{n: kwargs.pop(n) for n in names})
            return command(*args, **kwargs)
        return _apply(options, wrapper)
    return decorate


@dataclass(frozen=True)
class PruningFlags:
    """The pruning flags as typed; ``options`` turns them into the validated PruneOptions."""

    target_params: float | None
    target_bytes: str | None
    prune_level: float | None
    mlp_level: float | None
    criterion: str
    mode: str
    min_heads: int
    min_channels: float
    channel_group: int
    balance: str
    refit: bool
    vocab: str
    extra: dict  # command-specific fields of PruneOptions (scope, batch_size, mitosis_rounds)

    def options(self, model_params: Callable[[], int], seed: int) -> "PruneOptions":
        """Validated options; ``model_params`` (the base model's parameter count) is asked for only by
        --target-bytes, after everything that can be checked without the model was checked."""
        from forge_cuda.pruning.options import PruneOptions, finite

        for flag in ("target_params", "prune_level", "mlp_level", "min_channels"):
            finite(getattr(self, flag), "--" + flag.replace("_", "-"))
        common = dict(criterion=self.criterion, mode=self.mode, min_heads=self.min_heads, seed=seed,
                      min_channels=self.min_channels, channel_group=self.channel_group, refit=self.refit,
                      balance=self.balance, vocab=self.vocab, **self.extra)
        size = size_target(self.target_params, self.target_bytes, self.prune_level, self.mlp_level, None)
        PruneOptions(normalize="none" if size["target_params"] is not None else "l2", **size, **common)
        if self.target_bytes is not None:
            size = size_target(self.target_params, self.target_bytes, self.prune_level, self.mlp_level,
                               model_params())
        return PruneOptions(normalize="none" if size["target_params"] is not None else "l2", **size, **common)


def pruning_options(*extra):
    """Decorate a click command with the shared pruning options (plus ``extra`` PruneOptions fields);
    the command receives them as ``pruning: PruningFlags``."""
    names = _names(list(extra))

    def build(**values):
        more = {n: values.pop(n) for n in names}
        ctx = click.get_current_context(silent=True)
        if ctx is not None and ctx.params.get("keep_vision") \
                and ctx.get_parameter_source("vocab") == click.core.ParameterSource.DEFAULT:
            values["vocab"] = "keep"  # a kept vision tower refers to ids of the whole vocabulary
        return PruningFlags(**values, extra=more)
    return option_group("pruning", _OPTIONS + list(extra), build)


@dataclass(frozen=True)
class DataFlags:
    domain: str
    seq_len: int
    calib_windows: int
    seed: int


def data_options(command):
    """Decorate a click command with the shared data options; it receives them as ``data: DataFlags``."""
    return option_group("data", _DATA_OPTIONS, DataFlags)(command)


def parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]i?b?|b)?\s*", text.lower())
    if not match:
        raise SentinelError(f"--target-bytes {text!r} is not a size (use e.g. 200MB or 0.2GiB)")
    unit = match.group(2) or ""
    unit = unit if unit.endswith("b") or unit == "" else unit + "b"
    return int(float(match.group(1)) * _UNITS[unit])


def size_target(target_params: float | None, target_bytes: str | None, prune_level: float | None,
                mlp_level: float | None, model_params: int | None) -> dict:
    """Resolve the size flags to ``{target_params, level, mlp_level}``; one error line for contradictions.

    ``model_params`` (needed by --target-bytes only): None checks the flags and stands in a placeholder.
    """
    explicit = prune_level is not None or mlp_level is not None
    if target_params is not None and target_bytes is not None:
        raise SentinelError("give --target-params or --target-bytes, not both")
    if explicit and (target_params is not None or target_bytes is not None):
        raise SentinelError("give a size target (--target-params/--target-bytes) or explicit levels "
                            "(--prune-level/--mlp-level), not both")
    if explicit:
        return {"target_params": None, "level": prune_level or 0.0, "mlp_level": mlp_level or 0.0}
    if target_bytes is not None:
        want = parse_bytes(target_bytes) / 2
        if model_params is None:
            target_params = DEFAULT_TARGET
        elif not 0 < want <= model_params:
            raise SentinelError(f"--target-bytes {target_bytes} is not between 0 and the model's fp16 size "
                                f"({2 * model_params:,} bytes)")
        else:
            target_params = want / model_params
    return {"target_params": target_params if target_params is not None else DEFAULT_TARGET,
            "level": 0.0, "mlp_level": 0.0}
