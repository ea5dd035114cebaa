"""Sentinel forged models for plain transformers: per-layer attention heads and MLP widths.

A forged checkpoint keeps, per layer, only some query/KV heads and MLP channels, so
its weight shapes differ from layer to layer. Stock transformers classes build every
layer from the global config; the classes here are those same classes with each
layer's q/k/v/o and MLP projections resized to the ``sentinel_layout`` block in
config.json before the weights load. HF attention reshapes with -1 heads, so the
resized projections plus the layer's own ``num_key_value_groups`` (GPT-2:
``num_heads``/``split_size``) are all the forward pass needs.

This file and configuration_sentinel.py (its config classes, no torch) are
self-contained (torch + transformers only): forged folders carry copies of both and
name them in config.json's ``auto_map``, so

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

loads them where Sentinel is not installed. Their ``model_type`` is
``sentinel_<family>`` (e.g. ``sentinel_llama``): stock transformers does not know it
and therefore asks for ``trust_remote_code=True`` instead of loading the base class
with mismatched shapes. Sentinel's own loader (forge_cuda.checkpoint) resizes through
``apply_layout`` below, so both paths share one implementation.
"""

from __future__ import annotations

from torch import nn
from transformers import GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM
from transformers.pytorch_utils import Conv1D

from .configuration_sentinel import (CONFIGS, PREFIX, SentinelGPT2Config, SentinelLlamaConfig,
                                     SentinelMistralConfig, SentinelQwen2Config, SentinelQwen3Config)

LAYOUT_KEY = "sentinel_layout"
READABLE_VERSIONS = (1, 2, 3)


def count_indices(value) -> int:
    """Length of a stored index list: plain ints (v1/v2) or [start, stop) pairs (v3)."""
    if value and all(isinstance(v, (list, tuple)) for v in value):
        return sum(int(stop) - int(start) for start, stop in value)
    return len(value)


def layer_shapes(config) -> list[tuple[int, int, int | None]]:
    """(query heads, KV heads, MLP width or None) of every layer, from the config's layout block."""
    block = getattr(config, LAYOUT_KEY, None)
    n_layers = config.num_hidden_layers
    if not block:
        kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return [(config.num_attention_heads, kv, None)] * n_layers
    version = block.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{LAYOUT_KEY} format_version {version!r} is newer than this model file reads "
                         f"({', '.join(map(str, READABLE_VERSIONS))}); copy the model file of a newer Sentinel")
    layers = block["layers"]
    if len(layers) != n_layers:
        raise ValueError(f"{LAYOUT_KEY} lists {len(layers)} layers, the config has {n_layers}")
    return [(count_indices(l["q_heads"]), count_indices(l["kv_heads"]),
             count_indices(l["mlp_channels"]) if l.get("mlp_channels") is not None else None) for l in layers]


def base_model_type(model_type: str) -> str:
    return model_type[len(PREFIX):] if model_type.startswith(PREFIX) else model_type


def _linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=like.bias is not None,
                     device=like.weight.device, dtype=like.weight.dtype)


def _conv1d(nx: int, nf: int, like: nn.Module) -> nn.Module:
    return Conv1D(nf, nx).to(device=like.weight.device, dtype=like.weight.dtype)


def resize_attention(attn: nn.Module, heads: int, kv_heads: int, q_blocks: int = 1) -> None:
    """llama-like attention: new q/k/v/o projections for the given head counts (uninitialised)."""
    hd, hidden = attn.head_dim, attn.q_proj.in_features
    attn.q_proj = _linear(hidden, heads * hd * q_blocks, attn.q_proj)
    attn.k_proj = _linear(hidden, kv_heads * hd, attn.k_proj)
    attn.v_proj = _linear(hidden, kv_heads * hd, attn.v_proj)
    attn.o_proj = _linear(heads * hd, attn.o_proj.out_features, attn.o_proj)
    attn.num_key_value_groups = heads // kv_heads


def resize_mlp(mlp: nn.Module, width: int) -> None:
    """SwiGLU MLP: gate/up rows and down columns for ``width`` channels."""
    hidden = mlp.up_proj.in_features
    mlp.gate_proj = _linear(hidden, width, mlp.gate_proj)
    mlp.up_proj = _linear(hidden, width, mlp.up_proj)
    mlp.down_proj = _linear(width, mlp.down_proj.out_features, mlp.down_proj)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = width


def resize_gpt2_attention(attn: nn.Module, heads: int, kv_heads: int) -> None:
    """GPT-2's fused Conv1D c_attn = [q | k | v]; one KV head per query head."""
    if heads != kv_heads:
        raise ValueError(f"gpt2 has one KV head per query head; got {heads} query, {kv_heads} KV")
    width = heads * attn.head_dim
    attn.c_attn = _conv1d(attn.c_attn.weight.shape[0], 3 * width, attn.c_attn)
    attn.c_proj = _conv1d(width, attn.c_proj.weight.shape[1], attn.c_proj)
    attn.num_heads, attn.split_size = heads, width


def resize_gpt2_mlp(mlp: nn.Module, width: int) -> None:
    mlp.c_fc = _conv1d(mlp.c_fc.weight.shape[0], width, mlp.c_fc)
    mlp.c_proj = _conv1d(width, mlp.c_proj.weight.shape[1], mlp.c_proj)


def apply_layout(model: nn.Module, shapes: list[tuple[int, int, int | None]]) -> None:
    """Resize every layer whose shapes differ from the stock class's to ``shapes``.

    A layer without softmax attention (qwen3_5's linear-attention layers) must keep the
    base head counts; one without a dense MLP must keep its width unset.
    """
    config = model.config
    family = base_model_type(config.model_type)
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    base = (config.num_attention_heads, kv)
    gpt2 = family == "gpt2"
    layers = model.transformer.h if gpt2 else model.get_decoder().layers
    if len(shapes) != len(layers):
        raise ValueError(f"the layout lists {len(shapes)} layers, the model has {len(layers)}")
    for i, (layer, (heads, kv_heads, width)) in enumerate(zip(layers, shapes)):
        attn = layer.attn if gpt2 else getattr(layer, "self_attn", None)
        if (heads, kv_heads) != base:
            if attn is None:
                raise ValueError(f"layer {i} has no softmax attention, but the layout prunes its heads")
            if gpt2:
                resize_gpt2_attention(attn, heads, kv_heads)
            else:
                resize_attention(attn, heads, kv_heads, q_blocks=2 if family.startswith("qwen3_5") else 1)
        if width is not None:
            mlp = getattr(layer, "mlp", None)
            if gpt2:
                resize_gpt2_mlp(mlp, width)
            elif mlp is None or not hasattr(mlp, "up_proj"):
                raise ValueError(f"layer {i} has no dense MLP, but the layout prunes its channels")
            else:
                resize_mlp(mlp, width)


class _Forged:
    """Mixin: build the stock model, then resize its layers to the config's layout."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        apply_layout(self, layer_shapes(config))
        self.post_init()  # weight init/tying for the new modules (checkpoint weights overwrite it)


class SentinelLlamaForCausalLM(_Forged, LlamaForCausalLM):
    config_class = SentinelLlamaConfig


class SentinelMistralForCausalLM(_Forged, MistralForCausalLM):
    config_class = SentinelMistralConfig


class SentinelQwen2ForCausalLM(_Forged, Qwen2ForCausalLM):
    config_class = SentinelQwen2Config


class SentinelQwen3ForCausalLM(_Forged, Qwen3ForCausalLM):
    config_class = SentinelQwen3Config


class SentinelGPT2LMHeadModel(_Forged, GPT2LMHeadModel):
    config_class = SentinelGPT2Config


# family -> (config class, causal-LM class); qwen3_5 only where this transformers has it
CLASSES = {"llama": (SentinelLlamaConfig, SentinelLlamaForCausalLM),
           "mistral": (SentinelMistralConfig, SentinelMistralForCausalLM),
           "qwen2": (SentinelQwen2Config, SentinelQwen2ForCausalLM),
           "qwen3": (SentinelQwen3Config, SentinelQwen3ForCausalLM),
           "gpt2": (SentinelGPT2Config, SentinelGPT2LMHeadModel)}

if "qwen3_5_text" in CONFIGS:  # transformers older than Qwen3.5: the other families still load
    from transformers import Qwen3_5ForCausalLM

    from .configuration_sentinel import SentinelQwen3_5TextConfig

    class SentinelQwen3_5ForCausalLM(_Forged, Qwen3_5ForCausalLM):
        config_class = SentinelQwen3_5TextConfig

    CLASSES["qwen3_5_text"] = (SentinelQwen3_5TextConfig, SentinelQwen3_5ForCausalLM)


def auto_map(family: str) -> dict[str, str]:
    """config.json's ``auto_map`` for a family (modules = these files' names without .py).

    The config class lives in its own torch-free file, so tools that only read the config
    (AutoTokenizer, mlx-lm's tokenizer loading) work where torch is not installed.
    """
    config_class, model_class = CLASSES[family]
    return {"AutoConfig": f"{config_class.__module__.rsplit('.', 1)[-1]}.{config_class.__name__}",
            "AutoModelForCausalLM": f"{__name__.rsplit('.', 1)[-1]}.{model_class.__name__}"}


def forged_model_type(family: str) -> str:
    return CLASSES[family][0].model_type


def architecture(family: str) -> str:
    return CLASSES[family][1].__name__

