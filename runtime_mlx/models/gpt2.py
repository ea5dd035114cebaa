"""GPT-2 with per-layer head counts: fused ``c_attn`` = [q | k | v] of the kept heads.

Multi-head attention (one KV head per query head), learned positions, LayerNorm,
tanh-GELU MLP. Unlike stock mlx-lm's gpt2 it honours ``n_inner`` and an untied
``lm_head``. Weight names are stock mlx-lm's (``model.h.{i}.attn.c_attn``...);
raw HF names (Conv1D, optional ``transformer.`` prefix) are accepted too.

Self-contained (mlx + mlx-lm only): convert copies it into a forged MLX folder as its
``model_file`` for stock mlx-lm tools; the counts block is the same as decoder.py's.
"""


import math
from dataclasses import dataclass
from typing import Any, List, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import BaseModelArgs, create_attention_mask, scaled_dot_product_attention

# --- per-layer counts from config.json's sentinel_layout (same copy in every model file) ---------
LAYOUT_KEY = "sentinel_layout"
READABLE_VERSIONS = (1, 2, 3)


def count_indices(value) -> int:
    """Length of a stored index list: plain ints (v1/v2) or [start, stop) pairs (v3)."""
    if value and all(isinstance(v, (list, tuple)) for v in value):
        return sum(int(stop) - int(start) for start, stop in value)
    return len(value)


def layer_counts(params: dict, n_layers: int):
    """(query heads, KV heads, MLP width or None) lists per layer; None for an unpruned config."""
    block = params.get(LAYOUT_KEY)
    if not block:
        return None
    version = block.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{LAYOUT_KEY} format_version {version!r} is newer than this model file reads")
    layers = block.get("layers") or []
    if len(layers) != n_layers:
        raise ValueError(f"{LAYOUT_KEY} lists {len(layers)} layers, the model has {n_layers}")
    return ([count_indices(l["q_heads"]) for l in layers], [count_indices(l["kv_heads"]) for l in layers],
            [count_indices(l["mlp_channels"]) if l.get("mlp_channels") is not None else None for l in layers])


@dataclass(kw_only=True)  # keyword-only, so families can still declare required fields
class PerLayerArgs(BaseModelArgs):
    """Mixin fields: query heads, KV heads and MLP width of every layer (None = uniform)."""

    layer_heads: Optional[List[int]] = None
    layer_kv_heads: Optional[List[int]] = None
    layer_intermediate: Optional[List[Optional[int]]] = None

    @classmethod
    def from_dict(cls, params):
        args = super().from_dict(params)
        if params.get("layer_heads") is None:
            counts = layer_counts(params, args.num_layers_for_heads())
            if counts is not None:
                args.layer_heads, args.layer_kv_heads, args.layer_intermediate = counts
        args.fill_layer_lists()
        return args

    def __post_init__(self):
        self.fill_layer_lists()

    def fill_layer_lists(self) -> None:
        """Uniform lists for args built by hand (no layout), then check lengths agree."""
        n = self.num_layers_for_heads()
        if self.layer_heads is None:
            self.layer_heads = [self.base_heads()] * n
        if self.layer_kv_heads is None:
            self.layer_kv_heads = [self.base_kv_heads()] * n
        if self.layer_intermediate is None:
            self.layer_intermediate = [None] * n
        for name in ("layer_heads", "layer_kv_heads", "layer_intermediate"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} lists {len(getattr(self, name))} layers, the model has {n}")

    # Families name these differently (llama: num_attention_heads, gpt2: n_head).
    def num_layers_for_heads(self) -> int:
        return self.num_hidden_layers

    def base_heads(self) -> int:
        return self.num_attention_heads

    def base_kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads
# --- end of the shared block ---------------------------------------------------------------------


@dataclass
class ModelArgs(PerLayerArgs):
    model_type: str
    n_embd: int
    n_head: int
    n_layer: int
    n_positions: int
    layer_norm_epsilon: float
    vocab_size: int
    n_inner: Optional[int] = None
    activation_function: str = "gelu_new"
    tie_word_embeddings: bool = True

    def num_layers_for_heads(self) -> int:
        return self.n_layer

    def base_heads(self) -> int:
        return self.n_head

    def base_kv_heads(self) -> int:
        return self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def gelu_tanh(x: mx.array) -> mx.array:
    """HF's gelu_new: the tanh form, exactly (MLX's gelu_approx is a different curve fit)."""
    return 0.5 * x * (1 + mx.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {"gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu": nn.gelu, "relu": nn.relu}


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, n_heads: int):
        super().__init__()
        self.n_heads = self.n_kv_heads = n_heads
        self.head_dim = args.head_dim
        self.scale = self.head_dim**-0.5
        self.c_attn = nn.Linear(args.n_embd, 3 * n_heads * self.head_dim, bias=True)
        self.c_proj = nn.Linear(n_heads * self.head_dim, args.n_embd, bias=True)

    def __call__(self, x: mx.array, mask: Optional[mx.array] = None, cache: Optional[Any] = None) -> mx.array:
        B, L, _ = x.shape
        q, k, v = mx.split(self.c_attn(x), 3, axis=-1)
        q, k, v = (t.reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        out = scaled_dot_product_attention(q, k, v, cache=cache, scale=self.scale, mask=mask)
        return self.c_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs, width: int):
        super().__init__()
        self.c_fc = nn.Linear(args.n_embd, width)
        self.c_proj = nn.Linear(width, args.n_embd)
        self.act = ACTIVATIONS.get(args.activation_function, gelu_tanh)

    def __call__(self, x) -> mx.array:
        return self.c_proj(self.act(self.c_fc(x)))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, index: int):
        super().__init__()
        self.attn = Attention(args, args.layer_heads[index])
        self.mlp = MLP(args, args.layer_intermediate[index] or args.n_inner or 4 * args.n_embd)
        self.ln_1 = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)
        self.ln_2 = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)

    def __call__(self, x: mx.array, mask: Optional[mx.array] = None, cache: Optional[Any] = None) -> mx.array:
        h = x + self.attn(self.ln_1(x), mask, cache)
        return h + self.mlp(self.ln_2(h))


class GPT2Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.wte = nn.Embedding(args.vocab_size, args.n_embd)
        self.wpe = nn.Embedding(args.n_positions, args.n_embd)
        self.h = [TransformerBlock(args, i) for i in range(args.n_layer)]
        self.ln_f = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)

    def __call__(self, inputs: mx.array, cache=None):
        L = inputs.shape[1]
        if cache is None:
            cache = [None] * len(self.h)
        offset = cache[0].offset if cache[0] is not None else 0
        positions = mx.arange(L) + mx.array(offset)[..., None]  # offset is per-row in batched caches
        h = self.wte(inputs) + self.wpe(positions)
        mask = create_attention_mask(h, cache[0])
        for layer, c in zip(self.h, cache):
            h = layer(h, mask, cache=c)
        return self.ln_f(h)


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model_type = args.model_type
        self.model = GPT2Model(args)
        if not args.tie_word_embeddings:
            self.lm_head = nn.Linear(args.n_embd, args.vocab_size, bias=False)

    def __call__(self, inputs: mx.array, cache=None):
        out = self.model(inputs, cache)
        if self.args.tie_word_embeddings:
            return self.model.wte.as_linear(out)
        return self.lm_head(out)

    def sanitize(self, weights: dict) -> dict:
        """Map raw HF names (Conv1D [in, out], ``transformer.`` prefix) to ours; converted names pass."""
        out = {}
        for name, w in weights.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # HF's causal-mask buffers
            if name.startswith("lm_head."):  # weight, and scales/biases when quantized
                if not self.args.tie_word_embeddings:
                    out[name] = w
                continue
            if not name.startswith("model."):
                name = name.removeprefix("transformer.")
                if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                    w = w.transpose(1, 0)
                name = f"model.{name}"
            out[name] = w
        return out

    @property
    def layers(self):
        return self.model.h
