"""``sentinel prune``: one-shot head pruning without training (score, select, defrag, save)."""

from __future__ import annotations

import click

CRITERIA = ["taylor", "activation", "entropy", "magnitude", "random"]


@click.command("prune")
@click.argument("model")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output checkpoint folder.")
@click.option("--criterion", type=click.Choice(CRITERIA), default="taylor", show_default=True)
@click.option("--level", type=float, default=0.33, show_default=True, help="Fraction of query heads to remove.")
@click.option("--mode", type=click.Choice(["auto", "query", "group"]), default="auto", show_default=True,
              help="query: keep KV heads; group: remove whole KV groups; auto: both.")
@click.option("--scope", type=click.Choice(["global", "layer"]), default="global", show_default=True,
              help="Rank heads across all layers, or remove the fraction from each layer.")
@click.option("--min-heads", type=int, default=1, show_default=True, help="Query heads every layer keeps.")
@click.option("--domain", default="code", show_default=True, help="Calibration data: code | docs | a path.")
@click.option("--calib-windows", type=int, default=32, show_default=True)
@click.option("--seq-len", type=int, default=256, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def prune(model, out, criterion, level, mode, scope, min_heads, domain, calib_windows, seq_len, batch_size,
          seed, force):
    """Remove the least important attention heads of MODEL and write a smaller checkpoint."""
    from forge_cuda.prune import PruneOptions, run_prune

    options = PruneOptions(criterion=criterion, level=level, mode=mode, min_heads=min_heads, scope=scope, seed=seed)
    report = run_prune(model, out, options, domain=domain, calib_windows=calib_windows, seq_len=seq_len,
                       batch_size=batch_size, force=force)
    p, kv = report["params"], report["kv_bytes_per_token"]["fp16"]
    click.echo(f"{report['layout_summary']}; params {p['before']:,} -> {p['after']:,}; "
               f"KV bytes/token (fp16) {kv['before']:,} -> {kv['after']:,}")
    click.echo(str(out))


COMMANDS = [prune]
