"""``sentinel prune``: one-shot pruning without training (score, select, defrag, save)."""

from __future__ import annotations

import functools

import click

from sentinel.cli.pruning_options import data_options, pruning_options
from sentinel.cli.vision import vision_option

_SCOPE = click.option("--scope", type=click.Choice(["global", "layer"]), default="global", show_default=True,
                      help="Explicit head level: rank heads across all layers, or remove the fraction from each layer.")
_BATCH = click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
                      help="Windows per scoring batch.")


@click.command("prune")
@click.argument("model")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output checkpoint folder.")
@pruning_options(_SCOPE, _BATCH)
@data_options
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@vision_option
def prune(model, out, pruning, data, force):
    """Remove MODEL's least important heads and MLP channels and write a smaller checkpoint."""
    from forge_cuda.pruning.command import run_prune
    from sentinel.cli.resolve import resolve_model
    from sentinel.weights import header_param_count

    resolved = functools.cache(lambda: resolve_model(model))  # once, and only after the flags were checked
    options = pruning.options(lambda: header_param_count(resolved()), seed=data.seed)
    report = run_prune(model, resolved(), out, options, domain=data.domain, calib_windows=data.calib_windows,
                       seq_len=data.seq_len, force=force)
    p, kv = report["params"], report["kv_bytes_per_token"]["fp16"]
    click.echo(f"{report['layout_summary']}; params {p['before']:,} -> {p['after']:,} "
               f"({p['after'] / p['before']:.3f}); KV bytes/token (fp16) {kv['before']:,} -> {kv['after']:,}")
    click.echo(str(out))


COMMANDS = [prune]
