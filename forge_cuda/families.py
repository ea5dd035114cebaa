"""Per-family access to attention projections, so heads can be resized, sliced and cloned.

HF attention modules reshape with ``-1`` heads, so swapping in smaller q/k/v/o
layers and fixing the few per-module counters (``num_key_value_groups``, GPT-2's
``split_size``) is all a layer needs to run with its own head counts.

Every family exposes the same small interface:
``attention_layers`` (indices of layers whose heads can be pruned), ``attention``,
``resize`` (for loading), ``select`` (keep / repeat / rescale physical heads: both
defrag and mitosis are a ``select``), ``o_proj`` (where head outputs are
concatenated: gates and activation scores hook its input) and ``head_weights``
(per-head weight views for the magnitude criterion). The MLP side mirrors it:
``mlp_layers``, ``mlp``, ``resize_mlp``, ``select_mlp`` and ``down_proj`` (whose input
is the intermediate activation, one feature per channel).

Row and column slicing lives in forge_cuda/surgery.py.

Both kinds of prunable unit (query heads, MLP channels) are read the same way by
importance and gates: through ``unit_reader`` (the module whose input holds the
units), ``unit_width`` (input features per unit) and ``unit_out_weights`` (each
unit's slice of that module's weight, [units, width, out]).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from forge_cuda.surgery import head_rows, new_linear, col_scale, slice_linear, conv1d_like, slice_conv1d
from sentinel.errors import SentinelError

UNIT_KINDS = ("heads", "channels")


class _Units:
    """Reads query heads and MLP channels through one interface (see the module docstring)."""

    def unit_layers(self, model: nn.Module, kind: str) -> list[int]:
        return self.attention_layers(model) if kind == "heads" else self.mlp_layers(model)

    def unit_reader(self, model: nn.Module, index: int, kind: str) -> nn.Module:
        if kind == "heads":
            return self.o_proj(self.attention(model, index))
        return self.down_proj(self.mlp(model, index))

    def unit_width(self, model: nn.Module, index: int, kind: str) -> int:
        return self.head_dim(self.attention(model, index)) if kind == "heads" else 1

    def unit_out_weights(self, model: nn.Module, index: int, kind: str) -> torch.Tensor:
        """Each unit's slice of its reader's weight: [units, width, out]."""
        if kind == "heads":
            return self.head_weights(self.attention(model, index))["o"]
        return self.channel_out_weights(self.mlp(model, index))[:, None, :]


class LlamaLikeFamily(_Units):
    """llama, mistral, qwen2 (q/k/v bias) and qwen3 (shared per-head-dim q_norm/k_norm).

    qwen3's q_norm/k_norm act on head_dim and are shared by all heads, so they
    need no slicing.
    """

    model_types: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3")
    q_blocks = 1  # query-projection blocks of head_dim rows per head (qwen3_5 adds an output gate)

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_decoder().layers

    def attention_layers(self, model: nn.Module) -> list[int]:
        """Indices of the layers whose attention heads this family can prune."""
        return list(range(len(self.decoder_layers(model))))

    def attention(self, model: nn.Module, index: int) -> nn.Module:
        return self.decoder_layers(model)[index].self_attn

    def head_dim(self, attn: nn.Module) -> int:
        return attn.head_dim

    def resize(self, attn: nn.Module, num_heads: int, num_kv_heads: int) -> None:
        """Replace the projections with uninitialised ones of the given head counts."""
        hd = attn.head_dim
        hidden = attn.q_proj.in_features
        attn.q_proj = new_linear(hidden, num_heads * hd * self.q_blocks, attn.q_proj)
        attn.k_proj = new_linear(hidden, num_kv_heads * hd, attn.k_proj)
        attn.v_proj = new_linear(hidden, num_kv_heads * hd, attn.v_proj)
        attn.o_proj = new_linear(num_heads * hd, attn.o_proj.out_features, attn.o_proj)
        attn.num_key_value_groups = num_heads // num_kv_heads

    def select(self, attn: nn.Module, q_keep: list[int], kv_keep: list[int],
               o_scale: Sequence[float] | None = None) -> None:
        """Rebuild the layer from the given physical heads (positions in the current matrices).

        Positions may repeat (a clone); ``o_scale`` rescales each kept head's o_proj columns.
        """
        hd = attn.head_dim
        q_rows, kv_rows = head_rows(q_keep, hd * self.q_blocks), head_rows(kv_keep, hd)
        attn.q_proj = slice_linear(attn.q_proj, rows=q_rows)
        attn.k_proj = slice_linear(attn.k_proj, rows=kv_rows)
        attn.v_proj = slice_linear(attn.v_proj, rows=kv_rows)
        attn.o_proj = slice_linear(attn.o_proj, cols=head_rows(q_keep, hd),
                                   col_scale=col_scale(o_scale, hd, attn.o_proj.weight))
        attn.num_key_value_groups = len(q_keep) // len(kv_keep)

    def o_proj(self, attn: nn.Module) -> nn.Module:
        """The projection whose input columns are the concatenated head outputs."""
        return attn.o_proj

    # --- MLP channels (SwiGLU: gate/up rows and down columns, one per intermediate channel) ---------
    def mlp_layers(self, model: nn.Module) -> list[int]:
        return [i for i, layer in enumerate(self.decoder_layers(model)) if hasattr(getattr(layer, "mlp", None), "up_proj")]

    def mlp(self, model: nn.Module, index: int) -> nn.Module:
        return self.decoder_layers(model)[index].mlp

    def down_proj(self, mlp: nn.Module) -> nn.Module:
        return mlp.down_proj

    def resize_mlp(self, mlp: nn.Module, width: int) -> None:
        hidden = mlp.up_proj.in_features
        mlp.gate_proj = new_linear(hidden, width, mlp.gate_proj)
        mlp.up_proj = new_linear(hidden, width, mlp.up_proj)
        mlp.down_proj = new_linear(width, mlp.down_proj.out_features, mlp.down_proj)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = width

    def select_mlp(self, mlp: nn.Module, keep: list[int]) -> None:
        """Keep the given physical channels (positions in the current matrices)."""
        idx = torch.as_tensor(keep, dtype=torch.long)
        mlp.gate_proj = slice_linear(mlp.gate_proj, rows=idx)
        mlp.up_proj = slice_linear(mlp.up_proj, rows=idx)
        mlp.down_proj = slice_linear(mlp.down_proj, cols=idx)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = len(keep)

    def mlp_widths(self, model: nn.Module) -> dict[int, int]:
        return {i: self.mlp(model, i).up_proj.out_features for i in self.mlp_layers(model)}

    def channel_cost(self, model: nn.Module, index: int) -> int:
        """Parameters one intermediate channel costs (gate and up rows with biases, down column)."""
        m = self.mlp(model, index)
        bias = (m.gate_proj.bias is not None) + (m.up_proj.bias is not None)
        return m.gate_proj.in_features + m.up_proj.in_features + m.down_proj.out_features + bias

    def head_costs(self, model: nn.Module, index: int) -> tuple[int, int]:
        """Parameters of one query head (q rows, o columns) and one KV head (k and v rows)."""
        attn = self.attention(model, index)
        hd, hidden = attn.head_dim, attn.q_proj.in_features
        q_bias, kv_bias = attn.q_proj.bias is not None, attn.k_proj.bias is not None
        per_q = self.q_blocks * hd * (hidden + q_bias) + hd * attn.o_proj.out_features
        return per_q, 2 * hd * (hidden + kv_bias)

    def channel_out_weights(self, mlp: nn.Module) -> torch.Tensor:
        """down_proj's weight as [channels, out]."""
        return mlp.down_proj.weight.detach().t()

    def channel_in_weights(self, mlp: nn.Module) -> torch.Tensor:
        """gate and up rows side by side: [channels, 2 * in]."""
        return torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()], dim=1)

    def head_weights(self, attn: nn.Module) -> dict[str, torch.Tensor]:
        """Per-head weight blocks: q [H, rows, in], k/v [KV, hd, in], o [H, hd, out] (Linear convention)."""
        hd = attn.head_dim
        hidden = attn.q_proj.in_features
        o = attn.o_proj.weight.detach()
        return {"q": attn.q_proj.weight.detach().view(-1, hd * self.q_blocks, hidden),
                "k": attn.k_proj.weight.detach().view(-1, hd, hidden),
                "v": attn.v_proj.weight.detach().view(-1, hd, hidden),
                "o": o.t().reshape(-1, hd, o.shape[0])}


class Qwen35Family(LlamaLikeFamily):
    """qwen3_5: hybrid; only its full-attention layers have prunable heads.

    Its q_proj emits, per head, head_dim query rows followed by head_dim rows of a
    sigmoid output gate, so one head is a block of 2*head_dim rows. The gated
    DeltaNet (linear-attention) layers are left intact: their layout entries stay
    full and mean nothing.
    """

    model_types = ("qwen3_5", "qwen3_5_text")
    q_blocks = 2

    def attention_layers(self, model: nn.Module) -> list[int]:
        return [i for i, layer in enumerate(self.decoder_layers(model)) if hasattr(layer, "self_attn")]


class GPT2Family(_Units):
    """gpt2 (and distilgpt2): multi-head attention with a fused Conv1D ``c_attn`` = [q | k | v].

    Every query head has its own KV head (group size 1), so removing a query head
    removes its KV head: only ``group``/``auto`` selection applies, and mitosis has
    no room inside a group under format rule 6.
    """

    model_types = ("gpt2",)
    q_blocks = 1
    supports_gqa = False

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.transformer.h

    def attention_layers(self, model: nn.Module) -> list[int]:
        return list(range(len(self.decoder_layers(model))))

    def attention(self, model: nn.Module, index: int) -> nn.Module:
        return self.decoder_layers(model)[index].attn

    def head_dim(self, attn: nn.Module) -> int:
        return attn.head_dim

    def _set_heads(self, attn: nn.Module, num_heads: int) -> None:
        attn.num_heads = num_heads
        attn.split_size = num_heads * attn.head_dim

    def resize(self, attn: nn.Module, num_heads: int, num_kv_heads: int) -> None:
        if num_heads != num_kv_heads:
            raise SentinelError(f"gpt2 has one KV head per query head; got {num_heads} query, {num_kv_heads} KV")
        width = num_heads * attn.head_dim
        attn.c_attn = conv1d_like(attn.c_attn.weight.shape[0], 3 * width, attn.c_attn)
        attn.c_proj = conv1d_like(width, attn.c_proj.weight.shape[1], attn.c_proj)
        self._set_heads(attn, num_heads)

    def select(self, attn: nn.Module, q_keep: list[int], kv_keep: list[int],
               o_scale: Sequence[float] | None = None) -> None:
        if list(q_keep) != list(kv_keep):
            raise SentinelError("gpt2 keeps query and KV heads together (multi-head attention)")
        hd, width = attn.head_dim, attn.split_size
        rows = head_rows(q_keep, hd)
        fused = torch.cat([rows, rows + width, rows + 2 * width])
        attn.c_attn = slice_conv1d(attn.c_attn, out_idx=fused)
        attn.c_proj = slice_conv1d(attn.c_proj, in_idx=rows, in_scale=col_scale(o_scale, hd, attn.c_proj.weight))
        self._set_heads(attn, len(q_keep))

    def o_proj(self, attn: nn.Module) -> nn.Module:
        return attn.c_proj

    # --- MLP channels: c_fc columns (with bias) and c_proj rows (Conv1D stores [in, out]) -----------
    def mlp_layers(self, model: nn.Module) -> list[int]:
        return list(range(len(self.decoder_layers(model))))

    def mlp(self, model: nn.Module, index: int) -> nn.Module:
        return self.decoder_layers(model)[index].mlp

    def down_proj(self, mlp: nn.Module) -> nn.Module:
        return mlp.c_proj

    def resize_mlp(self, mlp: nn.Module, width: int) -> None:
        mlp.c_fc = conv1d_like(mlp.c_fc.weight.shape[0], width, mlp.c_fc)
        mlp.c_proj = conv1d_like(width, mlp.c_proj.weight.shape[1], mlp.c_proj)

    def select_mlp(self, mlp: nn.Module, keep: list[int]) -> None:
        idx = torch.as_tensor(keep, dtype=torch.long)
        mlp.c_fc = slice_conv1d(mlp.c_fc, out_idx=idx)
        mlp.c_proj = slice_conv1d(mlp.c_proj, in_idx=idx)

    def mlp_widths(self, model: nn.Module) -> dict[int, int]:
        return {i: self.mlp(model, i).c_fc.weight.shape[1] for i in self.mlp_layers(model)}

    def channel_cost(self, model: nn.Module, index: int) -> int:
        m = self.mlp(model, index)
        return m.c_fc.weight.shape[0] + 1 + m.c_proj.weight.shape[1]

    def channel_out_weights(self, mlp: nn.Module) -> torch.Tensor:
        return mlp.c_proj.weight.detach()

    def channel_in_weights(self, mlp: nn.Module) -> torch.Tensor:
        return mlp.c_fc.weight.detach().t()

    def head_costs(self, model: nn.Module, index: int) -> tuple[int, int]:
        """One head = its q rows and o rows; its own KV head = k and v rows (biases included)."""
        attn = self.attention(model, index)
        hd, hidden, out = attn.head_dim, attn.c_attn.weight.shape[0], attn.c_proj.weight.shape[1]
        return hd * (hidden + 1) + hd * out, 2 * hd * (hidden + 1)

    def head_weights(self, attn: nn.Module) -> dict[str, torch.Tensor]:
        hd, width = attn.head_dim, attn.split_size
        w = attn.c_attn.weight.detach().t()  # [3*width, in], Linear convention
        hidden = w.shape[1]
        q, k, v = w[:width], w[width:2 * width], w[2 * width:]
        return {"q": q.reshape(-1, hd, hidden), "k": k.reshape(-1, hd, hidden), "v": v.reshape(-1, hd, hidden),
                "o": attn.c_proj.weight.detach().reshape(-1, hd, attn.c_proj.weight.shape[1])}


_FAMILIES = [LlamaLikeFamily(), Qwen35Family(), GPT2Family()]


def supported_model_types() -> list[str]:
    return sorted(t for family in _FAMILIES for t in family.model_types)


def family_for(model_type: str):
    """The adapter for a model_type, or a one-line error listing the supported ones."""
    for family in _FAMILIES:
        if model_type in family.model_types:
            return family
    raise SentinelError(f"unsupported model_type {model_type!r}; supported: {', '.join(supported_model_types())}")
