"""``sentinel convert CKPT --to mlx|gguf``: a forged or plain checkpoint -> an MLX folder or a GGUF file."""

from __future__ import annotations

import sys

import click


@click.command("convert")
@click.argument("checkpoint")
@click.option("--to", "target", type=click.Choice(["mlx", "gguf"]), default="mlx", show_default=True,
              help="Output format: an MLX folder, or one GGUF file for llama.cpp / Ollama / LM Studio.")
@click.option("--out", type=click.Path(), default=None,
              help="Output folder (mlx) or .gguf file [default: $SENTINEL_HOME/mlx/<name>-<dtype>[-q<bits>] or "
                   "$SENTINEL_HOME/gguf/<name>-<outtype>.gguf].")
@click.option("--outtype", type=click.Choice(["f32", "f16", "bf16", "q8_0"]), default=None,
              help="GGUF tensor type (--to gguf) [default: f16]; 1-D tensors stay f32.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default="float16",
              show_default=True, help="Dtype of the weights (and of quantization scales).")
@click.option("--quantize", type=click.Choice(["4", "8"]), default=None,
              help="Quantize Linear/Embedding weights to this many bits with MLX's affine scheme.")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="64", show_default=True,
              help="Quantization group size; matrices whose input dim it does not divide stay dense.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--verify", is_flag=True,
              help="Compare logits of the source (torch) and the result (MLX); exit 1 above tolerance.")
def convert(checkpoint: str, target: str, out: str | None, outtype: str | None, dtype: str, quantize: str | None,
            group_size: str, force: bool, verify: bool) -> None:
    """Convert CHECKPOINT (folder or embedded model name) into an MLX folder or a GGUF file, tensor by tensor."""
    from sentinel.errors import SentinelError
    from sentinel.cli.resolve import resolve_model

    if target == "gguf":
        _gguf(click.get_current_context(), checkpoint, out, outtype or "f16", force)
        return
    if outtype is not None:
        raise SentinelError("--outtype applies to --to gguf; for MLX use --dtype and --quantize")
    from click.core import ParameterSource

    if quantize is None and click.get_current_context().get_parameter_source("group_size") \
            is not ParameterSource.DEFAULT:
        raise SentinelError("--group-size applies with --quantize 4|8 (unquantized weights have no groups)")

    try:
        from convert import convert_to_mlx, verify_conversion
    except ImportError as e:
        raise SentinelError(f"sentinel convert needs MLX ({e}); install it with `pip install mlx mlx-lm`") from None
    if verify:
        from convert.verify import require_torch

        require_torch()  # fail before converting, not after
    if out is not None:  # before resolving: an embedded name may be pulled (minutes) first
        from sentinel.atomic import check_output_dir

        check_output_dir(out, force=force)
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


def _gguf(ctx: click.Context, checkpoint: str, out: str | None, outtype: str, force: bool) -> None:
    from click.core import ParameterSource

    from sentinel.errors import SentinelError
    from sentinel.cli.resolve import resolve_model

    mlx_only = [f"--{n.replace('_', '-')}" for n in ("dtype", "quantize", "group_size", "verify")
                if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT]
    if mlx_only:
        raise SentinelError(f"{', '.join(mlx_only)} applies to --to mlx; GGUF takes --outtype f32|f16|bf16|q8_0")
    try:
        from convert.to_gguf import convert_to_gguf, modelfile_path
    except ImportError as e:
        raise SentinelError(f"sentinel convert --to gguf needs the gguf package ({e}); "
                            "install it with `pip install gguf`") from None
    if out is not None:  # before resolving: an embedded name may be pulled (minutes) first
        from pathlib import Path

        from convert.gguf_output import check_output_path

        check_output_path(Path(out), force)
    path = convert_to_gguf(resolve_model(checkpoint), out, outtype=outtype, force=force, progress=True)
    click.echo(str(path))
    click.echo(f"Ollama: ollama create NAME -f {modelfile_path(path)}")


COMMANDS = [convert]
