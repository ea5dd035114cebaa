"""Least-squares refit of the layer that reads pruned units, so its output changes as little as possible.

When heads or MLP channels go, the layer reading them (o_proj, down_proj) loses
inputs. Instead of just dropping their columns, solve for the kept columns that
best reproduce the unpruned layer's output on calibration activations:

    W_K' = argmin || X_K W_K'^T - X W^T ||^2 = W G[:, K] (G[K, K] + lambda I)^-1,  G = X^T X

(the structured form of OBS / FLAP-style compensation; ZipLM and SlimGPT do the same
with more bookkeeping). One forward pass collects G per reader; one small solve per
layer; no training. Ridge ``lambda`` is relative to the mean diagonal of G[K, K].
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from forge_cuda.families import family_for
from forge_cuda.gates import hook_units
from forge_cuda.importance import _progress, _scoring, _unpack, unit_ids
from sentinel.layout import HeadLayout


def collect_grams(model: nn.Module, batches: Iterable, kinds=("heads", "channels"),
                  progress: bool = False) -> dict[tuple[str, int], torch.Tensor]:
    """``X^T X`` (float64, on the CPU) of every prunable reader's input over the calibration tokens."""
    family = family_for(model.config.model_type)
    grams: dict[tuple[str, int], torch.Tensor] = {}
    state = {"mask": None}

    def capture(kind, i, units):
        x = units.detach().reshape(*units.shape[:-2], -1).double()  # [B, T, features]
        if state["mask"] is not None:
            x = x * state["mask"][..., None]
        x = x.reshape(-1, x.shape[-1])
        g = (x.T @ x).cpu()
        grams[kind, i] = grams[kind, i] + g if (kind, i) in grams else g

    handles = [h for kind in kinds if family.unit_layers(model, kind)
               for h in hook_units(model, lambda i, u, kind=kind: capture(kind, i, u), kind)]
    try:
        with _scoring(model), torch.no_grad():
            for batch in _progress(batches, "refit", progress):
                ids, mask = _unpack(batch, model.device)
                state["mask"] = mask.double() if mask is not None else None
                model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return grams


def _kept_features(current: HeadLayout, target: HeadLayout, i: int, kind: str, width: int) -> list[int]:
    keep = set(unit_ids(target, i, kind))
    return [p * width + d for p, u in enumerate(unit_ids(current, i, kind)) if u in keep for d in range(width)]


def refit_readers(model: nn.Module, grams: dict[tuple[str, int], torch.Tensor], current: HeadLayout,
                  target: HeadLayout, ridge: float = 1e-2) -> int:
    """Rewrite the kept input columns of every reader that loses units; returns how many readers changed.

    Call before ``defrag(model, target)``: the removed columns are dropped there.
    """
    family = family_for(model.config.model_type)
    changed = 0
    for (kind, i), gram in grams.items():
        width = family.unit_width(model, i, kind)
        kept = _kept_features(current, target, i, kind, width)
        if len(kept) == gram.shape[0]:
            continue
        reader = family.unit_reader(model, i, kind)
        conv1d = model.config.model_type == "gpt2"  # Conv1D stores [in, out]
        w = (reader.weight.T if conv1d else reader.weight).detach().double().cpu()  # [out, features]
        k = torch.as_tensor(kept)
        g_kk = gram[k][:, k]
        damp = ridge * g_kk.diagonal().mean().clamp_min(1e-12)
        solved = torch.linalg.solve(g_kk + damp * torch.eye(len(kept), dtype=g_kk.dtype), gram[k] @ w.T)  # [K, out]
        with torch.no_grad():
            new = solved.to(reader.weight.dtype).to(reader.weight.device)
            if conv1d:
                reader.weight[k] = new
            else:
                reader.weight[:, k] = new.T
        changed += 1
    return changed
