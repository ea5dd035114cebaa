"""``sentinel prune``: one-shot pruning without training (score, select, defrag, save)."""

from __future__ import annotations

import click

from sentinel.cli.pruning_options import data_options, pruning_options, size_target
from sentinel.cli.vision import vision_option


@click.command("prune")
@click.argument("model")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output checkpoint folder.")
@pruning_options
@data_options
@click.option("--scope", type=click.Choice(["global", "layer"]), default="global", show_default=True,
              help="Explicit head level: rank heads across all layers, or remove the fraction from each layer.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Windows per scoring batch.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@vision_option
def prune(model, out, target_params, target_bytes, prune_level, mlp_level, criterion, mode, min_heads, min_channels,
          channel_group, balance, refit, scope, domain, calib_windows, seq_len, batch_size, seed, force):
    """Remove MODEL's least important heads and MLP channels and write a smaller checkpoint."""
    from forge_cuda.prune import PruneOptions, run_prune
    from sentinel.cli.resolve import resolve_model

    size = size_target(resolve_model(model), target_params, target_bytes, prune_level, mlp_level)
    options = PruneOptions(criterion=criterion, mode=mode, min_heads=min_heads, scope=scope, seed=seed,
                           min_channels=min_channels, channel_group=channel_group, refit=refit, balance=balance,
                           normalize="none" if size["target_params"] is not None else "l2", **size)
    report = run_prune(model, out, options, domain=domain, calib_windows=calib_windows, seq_len=seq_len,
                       batch_size=batch_size, force=force)
    p, kv = report["params"], report["kv_bytes_per_token"]["fp16"]
    click.echo(f"{report['layout_summary']}; params {p['before']:,} -> {p['after']:,} "
               f"({p['after'] / p['before']:.3f}); KV bytes/token (fp16) {kv['before']:,} -> {kv['after']:,}")
    click.echo(str(out))


COMMANDS = [prune]
