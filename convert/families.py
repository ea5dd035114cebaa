"""Per-family knowledge the converter needs: MLX tensor names, expected shapes, config fix-ups.

Names follow what stock mlx-lm writes after its own ``sanitize`` (see
mlx_lm/models/<family>.py): rotary ``inv_freq`` buffers and tied ``lm_head``
weights are dropped, everything else keeps its HF name. Shapes come from the
config and the per-layer head layout, so a tensor that disagrees with the
layout is caught before anything is written.
"""

from __future__ import annotations

from typing import Any, Mapping

from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout, text_config

Shape = tuple[int, ...]


class LlamaLike:
    """llama, mistral, qwen2 (q/k/v bias) and qwen3 (per-head-dim q_norm/k_norm)."""

    model_types = ("llama", "mistral", "qwen2", "qwen3")

    def expected_shapes(self, config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
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

    def mlx_name(self, name: str, config: Mapping[str, Any]) -> str | None:
        """The MLX name of a source tensor, or None for tensors mlx-lm's sanitize drops."""
        if "rotary_emb.inv_freq" in name:
            return None
        if name == "lm_head.weight" and tied(config):
            return None
        return name

    def transform(self, name: str, array):
        return array

    def keeps_dtype(self, name: str) -> bool:
        return False

    def quantizable(self, name: str) -> bool:
        """Weights of Linear and Embedding modules: what mlx-lm's quantize_model converts."""
        return name.endswith(".weight") and not name.endswith(("norm.weight", "layernorm.weight"))

    def mlx_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Make explicit what mlx-lm's llama/qwen2 readers would otherwise default differently.

        transformers >= 5 nests ``rope_theta`` under ``rope_parameters``, which
        mlx-lm's llama and qwen2 ignore (they would silently fall back to their
        own default theta), and mlx-lm's llama defaults ``tie_word_embeddings``
        to True where transformers defaults to False.
        """
        rope = config.get("rope_parameters")
        if isinstance(rope, Mapping) and "rope_theta" not in config and "rope_theta" in rope:
            config["rope_theta"] = rope["rope_theta"]
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind != "default" and not config.get("rope_scaling"):
                config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        config["tie_word_embeddings"] = tied(config)
        return config


class GPT2:
    """gpt2: fused ``c_attn`` = [q | k | v] of the kept heads, Conv1D weights stored [in, out].

    HF checkpoints name tensors ``transformer.*`` (``GPT2LMHeadModel``) or bare
    (``GPT2Model``, the original hub files); MLX wants ``model.*`` with Linear
    [out, in] weights, which is what stock mlx-lm's gpt2 sanitize produces.
    """

    model_types = ("gpt2",)
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

    def expected_shapes(self, config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
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

    def mlx_name(self, name: str, config: Mapping[str, Any]) -> str | None:
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            return None  # HF's causal-mask buffers
        if name == "lm_head.weight":
            return None if tied(config, default=True) else name
        return "model." + name.removeprefix("transformer.")

    def transform(self, name: str, array):
        return array.T if name.endswith(self.conv1d) else array

    def keeps_dtype(self, name: str) -> bool:
        return False

    def quantizable(self, name: str) -> bool:
        return name.endswith(".weight") and ".ln_" not in name

    def mlx_config(self, config: dict[str, Any]) -> dict[str, Any]:
        config["tie_word_embeddings"] = tied(config, default=True)
        return config


class Qwen35:
    """qwen3_5: hybrid gated-DeltaNet / gated full attention, named as stock mlx-lm's qwen3_5 wants.

    Stock's sanitize, applied here once: names under ``language_model.``,
    vision tower and multi-token-prediction weights dropped, depthwise conv1d
    weights moved to [channels, kernel, 1], and the (1 + w) RMSNorm weights
    shifted by one. ``A_log`` keeps its source dtype (stock's cast_predicate).
    A full-attention query head is 2*head_dim rows of ``q_proj`` (query, then gate).
    """

    model_types = ("qwen3_5", "qwen3_5_text")
    shifted_norms = (".input_layernorm.weight", ".post_attention_layernorm.weight", "model.norm.weight",
                     ".q_norm.weight", ".k_norm.weight")

    def expected_shapes(self, config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
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
        if not self._tied(config):
            shapes["language_model.lm_head.weight"] = (vocab, hidden)
        return shapes

    def _tied(self, config: Mapping[str, Any]) -> bool:
        return tied(text_config(config), default=tied(config))

    def mlx_name(self, name: str, config: Mapping[str, Any]) -> str | None:
        if name.startswith(("model.visual.", "visual.", "mtp.", "model.mtp.")) or ".mtp." in name:
            return None
        if name == "lm_head.weight" and self._tied(config):
            return None
        name = name.replace("model.language_model.", "model.", 1)
        return name if name.startswith("language_model.") else f"language_model.{name}"

    def transform(self, name: str, array):
        if name.endswith("conv1d.weight") and array.shape[-1] != 1:
            return array.moveaxis(2, 1)
        if name.endswith(self.shifted_norms) and array.ndim == 1:
            return array + 1.0
        return array

    def keeps_dtype(self, name: str) -> bool:
        return name.endswith("A_log")

    def quantizable(self, name: str) -> bool:
        return name.endswith(".weight") and "norm" not in name and "conv1d" not in name

    def mlx_config(self, config: dict[str, Any]) -> dict[str, Any]:
        config.pop("vision_config", None)  # the vision tower is not converted (stock drops it too)
        return config


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


_FAMILIES = [LlamaLike(), GPT2(), Qwen35()]


def supported_model_types() -> list[str]:
    return sorted(t for f in _FAMILIES for t in f.model_types)


def family_for(model_type: str):
    """The converter family of a model_type, or a one-line error listing the supported ones."""
    for family in _FAMILIES:
        if model_type in family.model_types:
            return family
    raise SentinelError(f"unsupported model_type {model_type!r} for conversion; "
                        f"supported: {', '.join(supported_model_types())}")
