"""GPT-2 with per-layer head counts: fused ``c_attn`` = [q | k | v] of the kept heads.

Multi-head attention (one KV head per query head), learned positions, LayerNorm,
tanh-GELU MLP. Unlike stock mlx-lm's gpt2 it honours ``n_inner`` and an untied
``lm_head``. Weight names are stock mlx-lm's (``model.h.{i}.attn.c_attn``...);
raw HF names (Conv1D, optional ``transformer.`` prefix) are accepted too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask, scaled_dot_product_attention

from runtime_mlx.models.heads import PerLayerArgs


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
