"""The model card's fixed part: what the model is, which heads it kept, how to load it.

Written by `sentinel convert --to mlx` (``write_model_card``) and recomputed by `sentinel card`
(card.py) for MLX folders, forged HF folders and GGUF files; it lives on the MLX side so convert
imports runtime_mlx and never the other way round. No machine path is ever written: only names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from runtime_mlx.card_meta import Provenance, front_matter, provenance, recorded_sources
from sentinel.layout import HeadLayout, is_pruned

TITLES = {"mlx": " (MLX)", "transformers": "", "gguf": " (GGUF)"}


def _load_hint(library: str, pruned: bool) -> str:
    if library == "transformers":
        return ("Load with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` and "
                "`AutoTokenizer.from_pretrained(folder)`: its `modeling_sentinel.py` (torch + transformers only) "
                "builds the per-layer head counts" if pruned else
                "Load with `AutoModelForCausalLM.from_pretrained(folder)` (a standard architecture)")
    if library == "gguf":
        return "Run with llama.cpp (`llama-cli -m model.gguf`) or Ollama (`ollama create NAME -f Modelfile`)"
    return ("Load with `sentinel chat`/`runtime_mlx.load`; stock mlx-lm tools (`mlx_lm generate`, `chat`, "
            "`server`) open it with `--trust-remote-code`: its model file needs only mlx and mlx-lm"
            if pruned else "Load with `sentinel chat`/`runtime_mlx.load`; stock `mlx_lm.load` opens it as it is")


def model_card_text(*, name: str, origin: str, config: Mapping[str, Any], layout: HeadLayout, params: int,
                    nbytes: int, dtype: str, quantize: Optional[int], group_size: int, unquantized: list[str],
                    library: str = "mlx") -> str:
    """The card body (no front matter): size, format, heads per layer, loading."""
    base = layout.base
    weights = f"{dtype}, {quantize}-bit affine quantization (group size {group_size})" if quantize else dtype
    lines = [f"# {name}{TITLES[library]}", "", origin, "", "| | |", "|---|---|",
             f"| parameters | {params:,} |", f"| weights | {weights} |",
             f"| size on disk (tensors) | {nbytes:,} bytes ({nbytes / 2**20:.1f} MiB) |",
             f"| layers | {base.num_layers} |", f"| heads | {layout.summary()} |",
             f"| pruned | {'yes' if is_pruned(layout) else 'no'} |", ""]
    if quantize and unquantized:
        lines += [f"Kept dense (input dim not divisible by {group_size}): "
                  + ", ".join(f"`{p}`" for p in unquantized), ""]
    inter = base.intermediate_size
    mlp = inter is not None and any(layer.mlp_channels is not None for layer in layout.layers)
    lines += ["## Heads kept per layer", "", "| layer | query heads | KV heads |" + (" MLP channels |" if mlp else ""),
              "|---:|---:|---:|" + ("---:|" if mlp else "")]
    for i, layer in enumerate(layout.layers):
        kept = len(layer.mlp_channels) if layer.mlp_channels is not None else inter
        lines.append(f"| {i} | {layer.num_heads}/{base.num_heads} | {layer.num_kv_heads}/{base.num_kv_heads} |"
                     + (f" {kept}/{inter} |" if mlp else ""))
    return "\n".join(lines + ["", f"{_load_hint(library, is_pruned(layout))}.", ""])


def converted_origin(source_name: str, config: Mapping[str, Any]) -> str:
    return f"Converted by `sentinel convert` from `{source_name}` ({config.get('model_type')})."


def write_model_card(path: Path, *, src: Path, config: Mapping[str, Any], layout: HeadLayout, params: int,
                     nbytes: int, dtype: str, quantize: int | None, group_size: int,
                     unquantized: list[str], prov: Optional[Provenance] = None) -> None:
    """The converter's card for a new MLX folder: front matter from the source's SOURCE.json or card."""
    prov = provenance([src, src.parent, *recorded_sources(src)[0]], prov)
    tags = ["pruned"] if is_pruned(layout) else []
    text = front_matter(prov, "mlx", tags) + "\n" + model_card_text(
        name=src.name, origin=converted_origin(src.name, config), config=config, layout=layout, params=params,
        nbytes=nbytes, dtype=dtype, quantize=quantize, group_size=group_size, unquantized=unquantized)
    path.write_text(text)
