"""llama, mistral, qwen2 and qwen3 with their own head counts and MLP width per layer.

These families really agree: pre-norm blocks, RoPE attention with grouped KV
heads, SwiGLU MLP. They differ only in which projections carry a bias, the
default RoPE base and whether queries/keys get a per-head RMSNorm (qwen3);
``ModelArgs`` derives those from ``model_type``. Weight names are stock mlx-lm's.

Self-contained on purpose (mlx + mlx-lm only): convert copies this file into a
forged MLX folder as its ``model_file``, so stock ``mlx_lm generate/chat/server/
benchmark --trust-remote-code`` run the folder where Sentinel is not installed.
The per-layer counts block below is repeated verbatim in gpt2.py and qwen3_5.py
(tests/test_standalone_mlx.py checks the copies agree).
"""


from dataclasses import dataclass
from typing import Any, List, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.activations import swiglu
from mlx_lm.models.base import BaseModelArgs, create_attention_mask, scaled_dot_product_attention
from mlx_lm.models.rope_utils import initialize_rope

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


def family_of(model_type: str) -> str:
    """A forged HF folder's ``sentinel_llama`` reads as ``llama``."""
    return model_type.removeprefix("sentinel_")


@dataclass
class ModelArgs(PerLayerArgs):
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    rms_norm_eps: float
    vocab_size: int
    head_dim: Optional[int] = None
    max_position_embeddings: Optional[int] = None
    num_key_value_heads: Optional[int] = None
    rope_theta: Optional[float] = None
    rope_traditional: bool = False
    rope_scaling: Optional[dict] = None
    rope_parameters: Optional[dict] = None
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:  # from the *base* head count: pruning never changes head_dim
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_parameters:  # transformers >= 5 nests rope settings here
            if self.rope_theta is None:
                self.rope_theta = self.rope_parameters.get("rope_theta")
            if self.rope_scaling is None:
                self.rope_scaling = self.rope_parameters
        if self.rope_theta is None:
            self.rope_theta = 1000000.0 if self.family in ("qwen2", "qwen3") else 10000.0
        super().__post_init__()

    @property
    def family(self) -> str:
        return family_of(self.model_type)

    @property
    def qk_norm(self) -> bool:
        return self.family == "qwen3"

    @property
    def qkv_bias(self) -> bool:  # qwen2 always biases q/k/v (not o)
        return self.family == "qwen2" or self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.attention_bias and self.family != "qwen2"

    @property
    def mlp_has_bias(self) -> bool:
        return self.mlp_bias


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, n_heads: int, n_kv_heads: int):
        super().__init__()
        dim, head_dim = args.hidden_size, args.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.scale = head_dim**-0.5
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=args.qkv_bias)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=args.qkv_bias)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=args.qkv_bias)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=args.o_bias)
        if args.qk_norm:
            self.q_norm = nn.RMSNorm(head_dim, eps=args.rms_norm_eps)
            self.k_norm = nn.RMSNorm(head_dim, eps=args.rms_norm_eps)
        self.rope = initialize_rope(head_dim, args.rope_theta, args.rope_traditional,
                                    args.rope_scaling, args.max_position_embeddings)

    def __call__(self, x: mx.array, mask: Optional[mx.array] = None, cache: Optional[Any] = None) -> mx.array:
        B, L, _ = x.shape
        queries = self.q_proj(x).reshape(B, L, self.n_heads, -1)
        keys = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1)
        values = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1)
        if "q_norm" in self:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        queries = queries.transpose(0, 2, 1, 3)
        keys = keys.transpose(0, 2, 1, 3)
        values = values.transpose(0, 2, 1, 3)

        if cache is not None:
            queries = self.rope(queries, offset=cache.offset)
            keys = self.rope(keys, offset=cache.offset)
            keys, values = cache.update_and_fetch(keys, values)
        else:
            queries = self.rope(queries)
            keys = self.rope(keys)

        out = scaled_dot_product_attention(queries, keys, values, cache=cache, scale=self.scale, mask=mask)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)

    def __call__(self, x) -> mx.array:
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, index: int):
        super().__init__()
        self.self_attn = Attention(args, args.layer_heads[index], args.layer_kv_heads[index])
        self.mlp = MLP(args.hidden_size, args.layer_intermediate[index] or args.intermediate_size,
                       args.mlp_has_bias)
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(self, x: mx.array, mask: Optional[mx.array] = None, cache: Optional[Any] = None) -> mx.array:
        h = x + self.self_attn(self.input_layernorm(x), mask, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class DecoderStack(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [TransformerBlock(args, i) for i in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(self, inputs: mx.array, cache=None, input_embeddings: Optional[mx.array] = None):
        h = input_embeddings if input_embeddings is not None else self.embed_tokens(inputs)
        if cache is None:
            cache = [None] * len(self.layers)
        mask = create_attention_mask(h, cache[0])
        for layer, c in zip(self.layers, cache):
            h = layer(h, mask, cache=c)
        return self.norm(h)


class Model(nn.Module):
    """mlx-lm's model protocol: ``__call__(inputs, cache)``, ``layers``, ``sanitize``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model_type = args.model_type
        self.model = DecoderStack(args)
        if not args.tie_word_embeddings:
            self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)

    def __call__(self, inputs: mx.array, cache=None, input_embeddings: Optional[mx.array] = None):
        out = self.model(inputs, cache, input_embeddings)
        if self.args.tie_word_embeddings:
            return self.model.embed_tokens.as_linear(out)
        return self.lm_head(out)

    def sanitize(self, weights: dict) -> dict:
        """Accept raw HF names too: drop rotary buffers and a tied lm_head, as mlx-lm does."""
        weights = {k: v for k, v in weights.items() if "rotary_emb.inv_freq" not in k}
        if self.args.tie_word_embeddings:
            weights.pop("lm_head.weight", None)
        return weights

    @property
    def layers(self):
        return self.model.layers
