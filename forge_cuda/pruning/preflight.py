"""Checks that need the model's shapes but not its weights, run before anything is loaded or created.

A size target below what the pruning floors allow, or LoRA target modules that name
no layer of the model, would otherwise fail (or silently train nothing) only after
the baseline evaluation and stage-0 training. The model is built on the meta device
from config.json alone (no weight is read), so these checks take well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from forge_cuda import wrappers
from forge_cuda.checkpoint import build_empty, param_count, read_config
from forge_cuda.pruning.defrag import model_layout
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.space import LayerCosts, head_shape_ok, unit_costs
from sentinel.config import read_config as raw_config
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout, read_layout
from sentinel.remote_code import is_forged_config


def model_skeleton(path: str | Path) -> nn.Module:
    """The model at ``path`` (plain, forged or a multimodal wrapper's text model) on the meta device.

    Built the way checkpoint.load_model builds it before reading weights.
    """
    from transformers import AutoConfig

    path = Path(path)
    source_raw = read_config(path)
    wrapper = wrappers.detect(source_raw)
    raw = wrapper.text_config(source_raw) if wrapper else source_raw
    forged = is_forged_config(raw_config(path))  # model_type stock cannot resolve (as load_model)
    config = AutoConfig.for_model(**raw) if wrapper or forged else AutoConfig.from_pretrained(path)
    return build_empty(config, read_layout(raw), torch.float32)


def _layer_removable(layout: HeadLayout, i: int, cost: LayerCosts, options: PruneOptions, min_channels: int) -> int:
    """The most parameters layer i can give up: its cheapest legal head shape plus channels down to the floor."""
    best = 0
    layer = layout.layers[i]
    if cost.per_q and layer.num_kv_heads:
        k0, m0 = layer.num_kv_heads, layer.num_heads // layer.num_kv_heads
        best = max(((k0 * m0 - k * m) * cost.per_q + (k0 - k) * cost.per_kv
                    for k in range(1, k0 + 1) for m in range(1, m0 + 1)
                    if head_shape_ok(k, m, (k0, m0), options.mode, options.min_heads)), default=0)
    if cost.per_channel:
        best += max(0, len(layout.channels(i)) - min_channels) * cost.per_channel
    return best


def check_reachable(model: nn.Module, options: PruneOptions, base_params: int | None = None) -> None:
    """Fail when the size target (or MLP level) asks for more than every layer's floor lets go."""
    layout = model_layout(model)
    width = layout.base.intermediate_size or 1
    min_channels = max(1, round(options.min_channels * width))
    costs = unit_costs(model)
    if options.target_params is not None:
        params = param_count(model)
        goal = round(options.target_params * (base_params or params))
        smallest = params - sum(_layer_removable(layout, i, c, options, min_channels) for i, c in costs.items())
        if goal < smallest:
            raise SentinelError(f"a size target of {options.target_params:g} ({goal:,} parameters) is below the "
                                f"smallest model the floors allow: {smallest:,} ({smallest / params:.3f} of the "
                                "base; --min-heads/--min-channels and the unpruned embeddings set it)")
    elif options.mlp_level > 0:
        total = sum(layout.mlp_widths)
        spare = sum(max(0, len(layout.channels(i)) - min_channels) for i, c in costs.items() if c.per_channel)
        if round(options.mlp_level * total) > spare:
            raise SentinelError(f"--mlp-level {options.mlp_level:g} asks for {round(options.mlp_level * total):,} "
                                f"of {total:,} MLP channels, but --min-channels leaves only {spare:,} removable")


def check_target_modules(model: nn.Module, modules: str | list[str]) -> None:
    """Every LoRA target name must match a linear layer of the model (peft matches name suffixes)."""
    if modules == "all-linear":
        return
    linear = [name for name, m in model.named_modules()
              if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
    if not modules or any(not m for m in modules):
        raise SentinelError("--target-modules is empty: give comma-separated module names, or all-linear")
    for want in modules:
        if not any(name == want or name.endswith("." + want) for name in linear):
            names = sorted({name.rsplit(".", 1)[-1] for name in linear} - {"lm_head"})
            raise SentinelError(f"--target-modules {want!r} names no linear layer of {model.config.model_type} "
                                f"(it has: {', '.join(names)})")
