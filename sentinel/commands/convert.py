"""``sentinel convert CKPT --to mlx``: a forged or plain checkpoint -> an MLX model folder."""

from __future__ import annotations

import sys

import click


@click.command("convert")
@click.argument("checkpoint")
@click.option("--to", "target", type=click.Choice(["mlx"]), default="mlx", show_default=True,
              help="Output format.")
@click.option("--out", type=click.Path(), default=None,
              help="Output folder [default: $SENTINEL_HOME/mlx/<name>-<dtype>[-q<bits>]].")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default="float16",
              show_default=True, help="Dtype of the weights (and of quantization scales).")
@click.option("--quantize", type=click.Choice(["4", "8"]), default=None,
              help="Quantize Linear/Embedding weights to this many bits with MLX's affine scheme.")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="64", show_default=True,
              help="Quantization group size; matrices whose input dim it does not divide stay dense.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--verify", is_flag=True,
              help="Compare logits of the source (torch) and the result (MLX); exit 1 above tolerance.")
def convert(checkpoint: str, target: str, out: str | None, dtype: str, quantize: str | None,
            group_size: str, force: bool, verify: bool) -> None:
    """Convert CHECKPOINT (folder or embedded model name) into an MLX folder, tensor by tensor."""
    from sentinel.errors import SentinelError
    from sentinel.models import resolve_model

    try:
        from convert import convert_to_mlx, verify_conversion
    except ImportError as e:
        raise SentinelError(f"sentinel convert needs MLX ({e}); install it with `pip install mlx mlx-lm`") from None
    if verify:
        from convert.verify import require_torch

        require_torch()  # fail before converting, not after
    src = resolve_model(checkpoint)
    path = convert_to_mlx(src, out, dtype=dtype, quantize=int(quantize) if quantize else None,
                          group_size=int(group_size), force=force, progress=True)
    click.echo(str(path))
    if verify:
        r = verify_conversion(src, path)
        limit = (f"top-1 >= {r['min_top1']:.2f}" if r["bits"] else f"max |diff| <= {r['max_diff_allowed']:g}")
        click.echo(f"verify: {r['tokens']} tokens, max |logit diff| {r['max_abs_diff']:.3g}, "
                   f"top-1 agreement {r['top1_agreement']:.3f} (tolerance {limit}): "
                   f"{'ok' if r['ok'] else 'FAILED'}")
        if not r["ok"]:
            sys.exit(1)


COMMANDS = [convert]
