"""Row surgery: the embedding and LM head keep only the kept token rows.

Works on any HF causal LM through ``get_input_embeddings``/``get_output_embeddings``
(tied or untied heads, head biases), renumbers bos/eos/pad/unk in the config and the
generation config, and records the kept original ids in the layout (format v3), so
it composes with head/channel pruning and with an earlier vocabulary trim.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from forge_cuda.vocab.tokenizer_files import SPECIAL_KEYS
from sentinel.errors import SentinelError
from sentinel.layout import LAYOUT_KEY, read_layout


def _tied(model: nn.Module) -> bool:
    head = model.get_output_embeddings()
    return head is not None and head.weight is model.get_input_embeddings().weight


def row_params(model: nn.Module) -> int:
    """Parameters one vocabulary row costs: its embedding row, plus its LM-head row (and bias) when untied."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    cost = emb.shape[1]
    if head is not None and not _tied(model):
        cost += head.weight.shape[1] + (1 if getattr(head, "bias", None) is not None else 0)
    return int(cost)


def _remap(value, new_id: dict[int, int], key: str):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_remap(v, new_id, key) for v in value]
    if int(value) not in new_id:
        raise SentinelError(f"{key}={value} is not among the kept tokens; special ids always stay")
    return new_id[int(value)]


def _renumber_specials(model: nn.Module, new_id: dict[int, int]) -> None:
    targets = [model.config, getattr(model, "generation_config", None)]
    for cfg in (t for t in targets if t is not None):
        for key in SPECIAL_KEYS:
            if getattr(cfg, key, None) is not None:
                setattr(cfg, key, _remap(getattr(cfg, key), new_id, key))


def _new_embedding(old: nn.Embedding, idx: torch.Tensor, padding_idx: int | None) -> nn.Embedding:
    emb = nn.Embedding(len(idx), old.embedding_dim, padding_idx=padding_idx, device="meta")
    emb.weight = _rows(old.weight, idx)
    return emb


def _rows(param: nn.Parameter, idx: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(param.detach().index_select(0, idx.to(param.device)).clone(),
                        requires_grad=param.requires_grad)


def _restrict_head(head: nn.Module, idx: torch.Tensor, tied_weight: nn.Parameter | None) -> None:
    head.weight = tied_weight if tied_weight is not None else _rows(head.weight, idx)
    if getattr(head, "bias", None) is not None:
        head.bias = _rows(head.bias, idx)
    if hasattr(head, "out_features"):
        head.out_features = len(idx)


def restrict_vocab(model: nn.Module, kept: Iterable[int]) -> np.ndarray:
    """Keep only the rows ``kept`` (sorted current ids) in place; return their original ids.

    Row i of the new embedding/head is old row ``kept[i]``; so for every input of kept
    ids, the new logits equal the old logits at the kept ids.
    """
    kept = np.asarray(kept, dtype=np.int64)
    wrapper = getattr(model, "_sentinel_wrapper", None)
    if wrapper is not None and wrapper.keep_vision:  # the vision config names image/video token ids
        raise SentinelError("a kept vision tower refers to token ids of the full vocabulary: use `--vocab keep` "
                            "with --keep-vision")
    size = int(model.get_input_embeddings().weight.shape[0])
    if kept.ndim != 1 or not len(kept) or np.any(np.diff(kept) <= 0) or kept[0] < 0 or kept[-1] >= size:
        raise SentinelError(f"kept token ids must be strictly ascending within 0..{size - 1}")
    layout = read_layout(model.config.to_dict())  # before config.vocab_size changes
    origin = np.asarray(layout.vocab_ids, dtype=np.int64) if layout.vocab_trimmed else np.arange(size)
    base_size = layout.base_vocab_size if layout.vocab_trimmed else size
    new_id = {int(o): n for n, o in enumerate(kept)}
    tied = _tied(model)
    old_emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    idx = torch.as_tensor(kept, device=old_emb.weight.device)
    pad = old_emb.padding_idx
    model.set_input_embeddings(_new_embedding(old_emb, idx, new_id.get(pad) if pad is not None else None))
    if head is not None:
        _restrict_head(head, idx, model.get_input_embeddings().weight if tied else None)
    for module in model.modules():  # decoders cache vocab_size / padding_idx from the config
        if isinstance(getattr(module, "vocab_size", None), int) and module.vocab_size == size:
            module.vocab_size = len(kept)
        if pad is not None and not isinstance(module, nn.Embedding) and getattr(module, "padding_idx", None) == pad:
            module.padding_idx = new_id.get(pad)
    _renumber_specials(model, new_id)
    model.config.vocab_size = len(kept)
    vocab_ids = origin[kept]
    setattr(model.config, LAYOUT_KEY, layout.with_vocab(tuple(vocab_ids.tolist()), base_size).validate().to_dict())
    read_layout(model.config.to_dict())  # config and layout agree (specials within the kept rows)
    return vocab_ids
