"""Per-family knowledge the converter needs: MLX tensor names, expected shapes, config fix-ups.

Names follow what stock mlx-lm writes after its own ``sanitize`` (see
mlx_lm/models/<family>.py): rotary ``inv_freq`` buffers and tied ``lm_head``
weights are dropped, everything else keeps its HF name. Shapes come from the
MLX side's one description per family (runtime_mlx/shapes.py, which the planner
counts too), so a tensor that disagrees with the layout is caught before anything is written.
"""

from __future__ import annotations

from typing import Any, Mapping

from runtime_mlx import shapes
from runtime_mlx.shapes import Shape, tied
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout


class LlamaLike:
    """llama, mistral, qwen2 (q/k/v bias) and qwen3 (per-head-dim q_norm/k_norm)."""

    model_types = ("llama", "mistral", "qwen2", "qwen3")

    def expected_shapes(self, config: Mapping[str, Any], layout: HeadLayout) -> dict[str, Shape]:
        """Every tensor the MLX model holds, in model order, with the shape the layout implies."""
        return shapes.llama_like(config, layout)

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
        """The MLX tensors and shapes the layout implies (runtime_mlx/shapes.py)."""
        return shapes.gpt2(config, layout)

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
        """The MLX tensors and shapes the layout implies (runtime_mlx/shapes.py)."""
        return shapes.qwen3_5(config, layout)

    def _tied(self, config: Mapping[str, Any]) -> bool:
        return shapes.qwen3_5_tied(config)

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
