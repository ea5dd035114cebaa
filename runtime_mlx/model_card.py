"""The README.md of a converted MLX folder: what the model is and which heads it kept.

Written by `sentinel convert --to mlx` and recomputed by `sentinel card` (card.py); it lives on
the MLX side so convert imports runtime_mlx and never the other way round."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from sentinel.layout import HeadLayout, is_pruned


def write_model_card(path: Path, *, src: Path, config: Mapping[str, Any], layout: HeadLayout, params: int,
                     nbytes: int, dtype: str, quantize: int | None, group_size: int,
                     unquantized: list[str]) -> None:
    base = layout.base
    weights = f"{dtype}, {quantize}-bit affine quantization (group size {group_size})" if quantize else dtype
    lines = [
        f"# {src.name} (MLX)",
        "",
        f"Converted by `sentinel convert` from `{src.name}` ({config.get('model_type')}).",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {params:,} |",
        f"| weights | {weights} |",
        f"| size on disk (tensors) | {nbytes:,} bytes ({nbytes / 2**20:.1f} MiB) |",
        f"| layers | {base.num_layers} |",
        f"| heads | {layout.summary()} |",
        f"| pruned | {'yes' if is_pruned(layout) else 'no'} |",
        "",
    ]
    if quantize and unquantized:
        lines += [f"Kept dense (input dim not divisible by {group_size}): "
                  + ", ".join(f"`{p}`" for p in unquantized), ""]
    lines += ["## Heads kept per layer", "", "| layer | query heads | KV heads |", "|---:|---:|---:|"]
    for i, layer in enumerate(layout.layers):
        lines.append(f"| {i} | {layer.num_heads}/{base.num_heads} | {layer.num_kv_heads}/{base.num_kv_heads} |")
    stock = ("stock mlx-lm tools open it with `--trust-remote-code` (its `sentinel_model.py` needs Sentinel's "
             "runtime installed)" if is_pruned(layout) else "stock `mlx_lm.load` opens it as it is")
    lines += ["", f"Load with `sentinel chat`/`runtime_mlx.load`; {stock}.", ""]
    path.write_text("\n".join(lines))
