"""The MLX tensors of each family: names and shapes from config.json and the head layout.

One description per family on the MLX side, read by the converter (convert/families.py
checks every source tensor against it and writes in its order, GGUF's plan too) and by
the planner (runtime_mlx/planner.py counts bytes from it when a folder has no weights yet).
Names follow what stock mlx-lm holds after its ``sanitize`` (mlx_lm/models/<family>.py):
rotary ``inv_freq`` buffers and a tied ``lm_head`` are absent. Pure Python: no mlx here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from sentinel.config import text_config
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout
from sentinel.remote_code import base_model_type

Shape = tuple[int, ...]


def llama_like(config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
    """Every tensor the MLX model holds, in model order, with the shape the layout implies."""
    mt = config["model_type"]
    hidden, hd, vocab = layout.base.hidden_size, layout.base.head_dim, int(config["vocab_size"])
    qkv_bias = mt == "qwen2" or bool(config.get("attention_bias", False))
    o_bias = mt in ("llama", "mistral") and bool(config.get("attention_bias", False))
    mlp_bias = bool(config.get("mlp_bias", False))
    shapes: dict[str, Shape] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i, layer in enumerate(layout.layers):
        p = f"model.layers.{i}"
        q, kv = layer.num_heads * hd, layer.num_kv_heads * hd
        inter = len(layer.mlp_channels) if layer.mlp_channels is not None else layout.base.intermediate_size
        shapes[f"{p}.self_attn.q_proj.weight"] = (q, hidden)
        shapes[f"{p}.self_attn.k_proj.weight"] = (kv, hidden)
        shapes[f"{p}.self_attn.v_proj.weight"] = (kv, hidden)
        shapes[f"{p}.self_attn.o_proj.weight"] = (hidden, q)
        if qkv_bias:
            shapes.update({f"{p}.self_attn.q_proj.bias": (q,), f"{p}.self_attn.k_proj.bias": (kv,),
                           f"{p}.self_attn.v_proj.bias": (kv,)})
        if o_bias:
            shapes[f"{p}.self_attn.o_proj.bias"] = (hidden,)
        if mt == "qwen3":
            shapes[f"{p}.self_attn.q_norm.weight"] = (hd,)
            shapes[f"{p}.self_attn.k_norm.weight"] = (hd,)
        shapes[f"{p}.mlp.gate_proj.weight"] = (inter, hidden)
        shapes[f"{p}.mlp.up_proj.weight"] = (inter, hidden)
        shapes[f"{p}.mlp.down_proj.weight"] = (hidden, inter)
        if mlp_bias:
            shapes.update({f"{p}.mlp.gate_proj.bias": (inter,), f"{p}.mlp.up_proj.bias": (inter,),
                           f"{p}.mlp.down_proj.bias": (hidden,)})
        shapes[f"{p}.input_layernorm.weight"] = (hidden,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    if not tied(config):
        shapes["lm_head.weight"] = (vocab, hidden)
    return shapes

def gpt2(config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
    embd, hd = layout.base.hidden_size, layout.base.head_dim
    vocab, positions = int(config["vocab_size"]), int(config["n_positions"])
    shapes: dict[str, Shape] = {"model.wte.weight": (vocab, embd), "model.wpe.weight": (positions, embd)}
    for i, layer in enumerate(layout.layers):
        p = f"model.h.{i}"
        width = layer.num_heads * hd
        inter = (len(layer.mlp_channels) if layer.mlp_channels is not None
                 else layout.base.intermediate_size or 4 * embd)
        for norm in ("ln_1", "ln_2"):
            shapes.update({f"{p}.{norm}.weight": (embd,), f"{p}.{norm}.bias": (embd,)})
        shapes.update({f"{p}.attn.c_attn.weight": (3 * width, embd), f"{p}.attn.c_attn.bias": (3 * width,),
                       f"{p}.attn.c_proj.weight": (embd, width), f"{p}.attn.c_proj.bias": (embd,),
                       f"{p}.mlp.c_fc.weight": (inter, embd), f"{p}.mlp.c_fc.bias": (inter,),
                       f"{p}.mlp.c_proj.weight": (embd, inter), f"{p}.mlp.c_proj.bias": (embd,)})
    shapes.update({"model.ln_f.weight": (embd,), "model.ln_f.bias": (embd,)})
    if not tied(config, default=True):
        shapes["lm_head.weight"] = (vocab, embd)
    return shapes

def qwen3_5(config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
    cfg = text_config(config)
    hidden, hd, vocab = layout.base.hidden_size, layout.base.head_dim, int(cfg["vocab_size"])
    nk, nv = int(cfg["linear_num_key_heads"]), int(cfg["linear_num_value_heads"])
    dk, dv = int(cfg["linear_key_head_dim"]), int(cfg["linear_value_head_dim"])
    conv = 2 * nk * dk + nv * dv
    shapes: dict[str, Shape] = {"language_model.model.embed_tokens.weight": (vocab, hidden)}
    for i, layer in enumerate(layout.layers):
        p = f"language_model.model.layers.{i}"
        if layer_types(cfg)[i] == "linear_attention":
            shapes.update({f"{p}.linear_attn.dt_bias": (nv,), f"{p}.linear_attn.A_log": (nv,),
                           f"{p}.linear_attn.conv1d.weight": (conv, int(cfg.get("linear_conv_kernel_dim", 4)), 1),
                           f"{p}.linear_attn.norm.weight": (dv,),
                           f"{p}.linear_attn.out_proj.weight": (hidden, nv * dv),
                           f"{p}.linear_attn.in_proj_qkv.weight": (conv, hidden),
                           f"{p}.linear_attn.in_proj_z.weight": (nv * dv, hidden),
                           f"{p}.linear_attn.in_proj_b.weight": (nv, hidden),
                           f"{p}.linear_attn.in_proj_a.weight": (nv, hidden)})
        else:
            q, kv = layer.num_heads * hd, layer.num_kv_heads * hd
            shapes.update({f"{p}.self_attn.q_proj.weight": (2 * q, hidden),
                           f"{p}.self_attn.k_proj.weight": (kv, hidden),
                           f"{p}.self_attn.v_proj.weight": (kv, hidden),
                           f"{p}.self_attn.o_proj.weight": (hidden, q),
                           f"{p}.self_attn.q_norm.weight": (hd,), f"{p}.self_attn.k_norm.weight": (hd,)})
        inter = len(layer.mlp_channels) if layer.mlp_channels is not None else layout.base.intermediate_size
        shapes.update({f"{p}.mlp.gate_proj.weight": (inter, hidden), f"{p}.mlp.up_proj.weight": (inter, hidden),
                       f"{p}.mlp.down_proj.weight": (hidden, inter),
                       f"{p}.input_layernorm.weight": (hidden,), f"{p}.post_attention_layernorm.weight": (hidden,)})
    shapes["language_model.model.norm.weight"] = (hidden,)
    if not qwen3_5_tied(config):
        shapes["language_model.lm_head.weight"] = (vocab, hidden)
    return shapes


def qwen3_5_tied(config: Mapping[str, Any]) -> bool:
    """qwen3_5 ties lm_head in its text config, else as its wrapper says."""
    return tied(text_config(config), default=tied(config))


def layer_types(cfg: Mapping[str, Any]) -> list[str]:
    """Per-layer attention kind; older configs give only the full-attention interval."""
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    every = int(cfg.get("full_attention_interval", 4))
    return ["full_attention" if (i + 1) % every == 0 else "linear_attention"
            for i in range(int(cfg["num_hidden_layers"]))]


def tied(config: Mapping[str, Any], default: bool = False) -> bool:
    """Whether lm_head reuses the embedding; transformers' default is untied except for gpt2."""
    return bool(config.get("tie_word_embeddings", default))


# One description per MLX model module (runtime_mlx/models/<module>.py); model_type -> module is
# the runtime's own registry (runtime_mlx.models.FAMILIES: mistral shares llama's module, as in mlx-lm).
SHAPES: dict[str, Callable[[Mapping[str, Any], HeadLayout], dict[str, Shape]]] = {
    "llama": llama_like, "qwen2": llama_like, "qwen3": llama_like, "gpt2": gpt2, "qwen3_5": qwen3_5}


def tensor_shapes(config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
    """Every tensor an MLX model of this config and layout holds, in model order."""
    from runtime_mlx.models import FAMILIES

    model_type = base_model_type(config.get("model_type"))
    if model_type not in FAMILIES:
        raise SentinelError(f"unsupported model family {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")
    return SHAPES[FAMILIES[model_type]]({**config, "model_type": model_type}, layout)
