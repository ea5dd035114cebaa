"""Which llama.cpp architecture a checkpoint becomes, and how each HF tensor maps onto it.

llama.cpp's ``llama`` and ``qwen2`` graphs build every layer with layer 0's head
counts and FFN width, so only unpruned models may use them. Its ``deci`` graph
(src/models/deci.cpp, written for Nemotron-NAS) reads per-layer arrays for
``attention.head_count``, ``attention.head_count_kv`` and ``feed_forward_length``,
uses llama tensor names and llama (pairwise) RoPE, and adds q/k/v biases when
present: forged llama/mistral/qwen2 models become ``deci``.

Two rewrites follow from that, both exact:

- RoPE layout: HF rotates the two halves of a head, GGML's llama RoPE rotates
  adjacent pairs, so the rows of q/k (and their biases) are permuted per head
  (``llama``/``deci`` only; the ``qwen2`` graph uses HF's NEOX layout).
- deci loads ``attn_q.bias`` with width ``hidden_size`` whatever a layer's head
  count. A biased layer with fewer query heads is therefore padded back to
  ``hidden_size / head_dim`` query slots: zero q rows, zero bias, zero o_proj
  columns, so the padded heads add exactly nothing. When the kept KV heads do
  not divide those slots into equal groups, zero KV heads are added too (the
  fewest that do). MLP widths, and KV heads wherever possible, stay pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from convert.families import LlamaLike, tied
from sentinel.errors import LayoutError, SentinelError
from sentinel.layout import HeadLayout

MODEL_TYPES = ("llama", "mistral", "qwen2")
LAYER_NAMES = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
               "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
               "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
               "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
               "self_attn.o_proj.weight": "attn_output.weight", "self_attn.o_proj.bias": "attn_output.bias",
               "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
               "mlp.down_proj.weight": "ffn_down.weight"}
GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}


@dataclass
class TensorPlan:
    """One GGUF tensor: its source, its final (numpy, HF-order) shape and the rewrite to get there."""

    name: str
    source: str
    shape: tuple[int, ...]
    rewrite: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass
class ArchPlan:
    """Everything the writer needs to know about the model, decided before writing."""

    arch: str
    head_dim: int
    hidden: int
    q_heads: list[int]  # per layer, as written (padded layers count their zero slots)
    kv_heads: list[int]
    ff: list[int]
    rope_theta: float
    rms_eps: float
    context: int
    vocab: int
    tensors: list[TensorPlan] = field(default_factory=list)
    padded_layers: list[int] = field(default_factory=list)

    @property
    def per_layer(self) -> bool:
        return self.arch == "deci"


def plan_arch(config: Mapping[str, Any], layout: HeadLayout, source_shapes: Mapping[str, tuple[int, ...]]) -> ArchPlan:
    """Check the checkpoint against its layout and decide the GGUF architecture and tensors."""
    mt = config.get("model_type")
    if mt not in MODEL_TYPES:
        raise SentinelError(f"model_type {mt!r} cannot be converted to GGUF yet; supported: {', '.join(MODEL_TYPES)}")
    _check_features(config)
    expected = LlamaLike().expected_shapes(config, layout)
    _check_shapes(config, expected, source_shapes)

    base, hd = layout.base, layout.base.head_dim
    q = layout.q_counts
    kv = layout.kv_counts
    ff = [len(l.mlp_channels) if l.mlp_channels is not None else int(base.intermediate_size) for l in layout.layers]
    irregular = any(n != base.num_heads for n in q) or any(n != base.num_kv_heads for n in kv) or \
        any(n != base.intermediate_size for n in ff)
    arch = "deci" if irregular else ("qwen2" if mt == "qwen2" else "llama")
    biased = mt == "qwen2" or bool(config.get("attention_bias", False))
    plan = ArchPlan(arch=arch, head_dim=hd, hidden=base.hidden_size, q_heads=list(q), kv_heads=list(kv), ff=ff,
                    rope_theta=rope_theta(config), rms_eps=float(config.get("rms_norm_eps", 1e-6)),
                    context=int(config.get("max_position_embeddings", 2048)), vocab=int(config["vocab_size"]))
    permute = arch in ("llama", "deci")
    for i in range(base.num_layers):
        if arch == "deci" and biased and q[i] * hd != base.hidden_size:
            plan.q_heads[i], plan.kv_heads[i] = _padded_slots(i, q[i], kv[i], hd, base.hidden_size)
            plan.padded_layers.append(i)
    for hf_name, shape in expected.items():
        plan.tensors.append(_tensor(plan, hf_name, shape, layout, permute))
    return plan


def rope_theta(config: Mapping[str, Any]) -> float:
    """transformers 5 nests theta under ``rope_parameters``; older configs keep it at the top."""
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _check_features(config: Mapping[str, Any]) -> None:
    """Refuse, by name, what llama.cpp's graphs (as written here) would silently get wrong."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type")) or params.get("rope_type") or "default"
    if kind != "default":
        raise SentinelError(f"rope scaling {kind!r} is not supported by the GGUF converter yet (default RoPE only)")
    if config.get("model_type") == "qwen2" and config.get("use_sliding_window"):
        raise SentinelError("qwen2 with use_sliding_window=true has no GGUF mapping here (llama.cpp's graphs "
                            "used for it attend to the whole context)")
    if config.get("mlp_bias"):
        raise SentinelError("mlp_bias=true is not supported by the GGUF converter (llama.cpp's deci graph "
                            "loads no FFN biases)")
    if config.get("hidden_act", "silu") != "silu":
        raise SentinelError(f"hidden_act {config.get('hidden_act')!r}: llama.cpp's llama/qwen2/deci graphs use SiLU")


def _check_shapes(config, expected: Mapping[str, tuple[int, ...]], source: Mapping[str, tuple[int, ...]]) -> None:
    ignored = [n for n in source if "rotary_emb.inv_freq" in n or (n == "lm_head.weight" and tied(config))]
    unexpected = [n for n in source if n not in expected and n not in ignored]
    if unexpected:
        raise SentinelError(f"unexpected tensor {unexpected[0]} for model_type {config['model_type']}")
    missing = [n for n in expected if n not in source]
    if missing:
        raise SentinelError(f"checkpoint lacks tensor {missing[0]} ({len(missing)} missing)")
    for name, shape in expected.items():
        if tuple(source[name]) != tuple(shape):
            raise LayoutError(f"tensor {name} has shape {tuple(source[name])}, "
                              f"the layout in config.json expects {tuple(shape)}")


def _padded_slots(i: int, q: int, kv: int, hd: int, hidden: int) -> tuple[int, int]:
    """(query slots, KV slots) of a biased deci layer: hidden / head_dim query slots in equal KV groups."""
    slots, rem = divmod(hidden, hd)
    group = q // kv
    for kv_slots in range(kv, slots + 1):
        if rem == 0 and slots % kv_slots == 0 and slots // kv_slots >= group:
            return slots, kv_slots
    raise SentinelError(
        f"layer {i}: llama.cpp's deci graph needs q_proj biases of width hidden_size={hidden}, and "
        f"{q} query heads over {kv} KV heads (head_dim {hd}) cannot be padded to {hidden / hd:g} slots "
        "in equal KV groups; this pruned biased model has no GGUF form")


def _tensor(plan: ArchPlan, hf_name: str, shape: tuple[int, ...], layout: HeadLayout, permute: bool) -> TensorPlan:
    if hf_name in GLOBAL_NAMES:
        return TensorPlan(GLOBAL_NAMES[hf_name], hf_name, tuple(shape))
    _, _, index, rest = hf_name.split(".", 3)
    i = int(index)
    name = f"blk.{i}.{LAYER_NAMES[rest]}"
    hd, q_src, kv_src = plan.head_dim, layout.q_counts[i], layout.kv_counts[i]
    q_out, kv_out = plan.q_heads[i], plan.kv_heads[i]
    q_slots = _slot_index(q_src, q_src // kv_src, q_out // kv_out) if q_out != q_src else None
    kv_slots = np.arange(kv_src) if kv_out != kv_src else None
    if rest.startswith(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")):
        is_q = rest.startswith("self_attn.q_proj")
        slots, heads = (q_slots, q_out) if is_q else (kv_slots, kv_out)
        rope = permute and not rest.startswith("self_attn.v_proj")

        def rewrite(w, slots=slots, heads=heads, rope=rope):
            w = _pad_rows(w, slots, heads, hd) if slots is not None else w
            return _rope_permute(w, heads) if rope else w
        return TensorPlan(name, hf_name, (heads * hd,) + tuple(shape[1:]),
                          rewrite if slots is not None or rope else None)
    if rest == "self_attn.o_proj.weight" and q_slots is not None:
        return TensorPlan(name, hf_name, (shape[0], q_out * hd),
                          lambda w, s=q_slots: _pad_rows(w.T, s, q_out, hd).T.copy())
    return TensorPlan(name, hf_name, tuple(shape))


def _slot_index(q: int, group: int, slots_per_group: int) -> np.ndarray:
    """Physical query head p (group p // group) goes to slot (p // group) * slots_per_group + p % group."""
    p = np.arange(q)
    return (p // group) * slots_per_group + p % group


def _pad_rows(w: np.ndarray, slots: np.ndarray, total: int, hd: int) -> np.ndarray:
    out = np.zeros((total * hd,) + w.shape[1:], dtype=w.dtype)
    for p, s in enumerate(slots):
        out[s * hd:(s + 1) * hd] = w[p * hd:(p + 1) * hd]
    return out


def _rope_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """HF's half-split rotary layout -> GGML's interleaved pairs, per head (rows of a weight or bias)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
