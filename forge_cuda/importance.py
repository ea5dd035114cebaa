"""How much each attention head matters, measured on calibration batches.

Scores are "higher = more important" for every criterion, one 1-D array per
prunable layer over the layer's CURRENT physical heads (layers may differ in
size after pruning or mitosis). ``HeadScores.grid()`` gives the heatmap form:
[layers, heads] indexed by original head id, NaN where a head is gone.

Criteria (see docs/PRUNING.md):
- ``taylor``: mean over examples of |dL/dg| for a gate g=1 on the head's o_proj
  input (Michel et al. 2019), i.e. the first-order loss change of removing it.
- ``activation``: mean token norm of the head's contribution to the o_proj
  output (its o_proj-input slice through its own o_proj columns; Minitron-style).
- ``entropy``: attention focus 1 - H(p)/log(#keys), averaged over query tokens
  (the seed's criterion, inverted so diffuse heads score low).
- ``magnitude``: norm of the head's q rows and o columns plus its share of its
  KV head's k/v rows (weak by published evidence; kept as a baseline).
- ``random``: seeded uniform scores (the control).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from forge_cuda.defrag import model_layout
from forge_cuda.families import family_for
from forge_cuda.gates import hook_head_outputs
from sentinel.atomic import write_json
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout

CRITERIA = ("taylor", "activation", "entropy", "magnitude", "random")
NORMALIZATIONS = ("none", "l2", "max")


@dataclass
class HeadScores:
    """Per-layer scores over physical heads, plus the layout that maps them to original ids."""

    criterion: str
    layout: HeadLayout
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    tokens: int = 0

    def grid(self) -> np.ndarray:
        """[num_layers, width] float array indexed by original head id (clone ids extend the width), NaN = absent."""
        width = max([self.layout.base.num_heads] + [max(l.q_heads) + 1 for l in self.layout.layers])
        grid = np.full((self.layout.base.num_layers, width), np.nan)
        for i, scores in self.layers.items():
            grid[i, list(self.layout.layers[i].q_heads)] = scores
        return grid

    def normalized(self, how: str = "l2") -> "HeadScores":
        """Divide each layer by its L2 norm or max, so layers compete on equal terms (Michel et al.)."""
        if how not in NORMALIZATIONS:
            raise SentinelError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALIZATIONS)}")
        out = {}
        for i, s in self.layers.items():
            denom = {"none": 1.0, "l2": float(np.linalg.norm(s)), "max": float(np.abs(s).max())}[how]
            out[i] = s / denom if denom > 0 else s.copy()
        return HeadScores(self.criterion, self.layout, out, self.tokens)

    def to_dict(self) -> dict:
        return {"criterion": self.criterion, "tokens": self.tokens,
                "layers": [{"layer": i, "heads": list(self.layout.layers[i].q_heads),
                            "scores": [float(v) for v in s]} for i, s in sorted(self.layers.items())]}

    def save(self, folder: str | Path, stem: str | None = None) -> Path:
        """Write ``<stem>.json`` (per-layer lists) and ``<stem>.npy`` (the NaN-padded grid)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = stem or f"scores_{self.criterion}"
        write_json(folder / f"{stem}.json", self.to_dict())
        np.save(folder / f"{stem}.npy", self.grid())
        return folder / f"{stem}.json"


def combine(scores: Mapping[str, HeadScores], weights: Mapping[str, float], normalize: str = "l2") -> HeadScores:
    """Weighted sum of per-layer-normalised criteria (e.g. taylor 1.0 + entropy 0.3)."""
    parts = [(scores[name].normalized(normalize), w) for name, w in weights.items()]
    first = parts[0][0]
    layers = {i: sum(w * p.layers[i] for p, w in parts) for i in first.layers}
    name = "+".join(f"{w:g}*{n}" for n, w in weights.items())
    return HeadScores(name, first.layout, layers, first.tokens)


def _unpack(batch, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch is a [B, T] LongTensor (packed, no padding) or a dict with input_ids/attention_mask."""
    if isinstance(batch, Mapping):
        ids, mask = batch["input_ids"], batch.get("attention_mask")
    else:
        ids, mask = batch, None
    if ids.dim() != 2:
        raise SentinelError(f"calibration batches must be [batch, seq_len] token ids, got shape {tuple(ids.shape)}")
    return ids.to(device), (mask.to(device) if mask is not None else None)


def _labels(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Next-token labels that ignore only true padding."""
    return ids if mask is None else ids.masked_fill(mask == 0, -100)


@contextlib.contextmanager
def _scoring(model: nn.Module, attn: str | None = None):
    """Eval mode (no dropout), optionally another attention implementation; restored afterwards."""
    was_training, before = model.training, model.config._attn_implementation
    model.eval()
    if attn and attn != before:
        model.set_attn_implementation(attn)
    try:
        yield
    finally:
        if attn and attn != before:
            model.set_attn_implementation(before)
        model.train(was_training)


def _progress(batches: Iterable, desc: str, progress: bool):
    if not progress:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, unit="batch", leave=False)


def _zeros(model: nn.Module, layout: HeadLayout) -> dict[int, torch.Tensor]:
    family = family_for(model.config.model_type)
    return {i: torch.zeros(layout.layers[i].num_heads, dtype=torch.float64) for i in family.attention_layers(model)}


def _taylor(model, batches, progress) -> tuple[dict, int]:
    layout = model_layout(model)
    acc, gates, examples, tokens = _zeros(model, layout), {}, 0, 0

    def gate(i, heads):
        g = torch.ones(heads.shape[0], *([1] * (heads.dim() - 3)), heads.shape[-2], 1,
                       device=heads.device, dtype=heads.dtype, requires_grad=True)
        gates[i] = g
        return heads * g

    handles = hook_head_outputs(model, gate)
    try:
        with _scoring(model), torch.enable_grad():
            for batch in _progress(batches, "taylor", progress):
                ids, mask = _unpack(batch, model.device)
                gates.clear()
                loss = model(input_ids=ids, attention_mask=mask, labels=_labels(ids, mask), use_cache=False).loss
                order = sorted(gates)
                grads = torch.autograd.grad(loss, [gates[i] for i in order])
                for i, g in zip(order, grads):
                    acc[i] += g.detach().abs().reshape(g.shape[0], -1).sum(0).double().cpu()
                examples += ids.shape[0]
                tokens += int(mask.sum()) if mask is not None else ids.numel()
    finally:
        for h in handles:
            h.remove()
    return {i: v / max(examples, 1) for i, v in acc.items()}, tokens


def _activation(model, batches, progress) -> tuple[dict, int]:
    layout = model_layout(model)
    family = family_for(model.config.model_type)
    acc, state = _zeros(model, layout), {"w": None}
    gram = {}
    for i in acc:  # per head: G = W_o,h^T W_o,h, so |x W_o,h^T|^2 = x G x^T without materialising outputs
        o = family.head_weights(family.attention(model, i))["o"].float()  # [H, hd, out]
        gram[i] = torch.einsum("hdo,heo->hde", o, o)

    def measure(i, heads):
        x = heads.detach().float()  # [B, T, H, hd]
        sq = torch.einsum("bthd,hde,bthe->bth", x, gram[i].to(x.device), x).clamp_min(0).sqrt()
        w = state["w"]
        acc[i] += (sq * w[..., None]).sum((0, 1)).double().cpu()

    handles = hook_head_outputs(model, measure)
    tokens = 0
    try:
        with _scoring(model), torch.no_grad():
            for batch in _progress(batches, "activation", progress):
                ids, mask = _unpack(batch, model.device)
                state["w"] = (mask if mask is not None else torch.ones_like(ids)).float()
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                tokens += int(state["w"].sum())
    finally:
        for h in handles:
            h.remove()
    return {i: v / max(tokens, 1) for i, v in acc.items()}, tokens


def _entropy(model, batches, progress) -> tuple[dict, int]:
    layout = model_layout(model)
    family = family_for(model.config.model_type)
    acc, state, tokens = _zeros(model, layout), {}, 0

    def capture(i):
        def hook(module, args, output):
            p = output[1].detach().float()  # [B, H, T, S] attention probabilities
            ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [B, H, T]
            focus = 1.0 - ent / state["log_keys"][:, None, :]
            acc[i] += (focus * state["w"][:, None, :]).sum((0, 2)).double().cpu()
        return hook

    handles = [family.attention(model, i).register_forward_hook(capture(i)) for i in acc]
    try:
        with _scoring(model, attn="eager"), torch.no_grad():
            for batch in _progress(batches, "entropy", progress):
                ids, mask = _unpack(batch, model.device)
                valid = (mask if mask is not None else torch.ones_like(ids)).float()
                keys = valid.cumsum(-1)  # causal: keys a query token may attend to
                w = valid * (keys >= 2)  # one key has no choice, hence no entropy to measure
                state.update(w=w, log_keys=torch.log(keys.clamp_min(2)))
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                tokens += int(w.sum())
    finally:
        for h in handles:
            h.remove()
    return {i: v / max(tokens, 1) for i, v in acc.items()}, tokens


def _magnitude(model) -> dict:
    layout = model_layout(model)
    family = family_for(model.config.model_type)
    out = {}
    for i in family.attention_layers(model):
        w = family.head_weights(family.attention(model, i))
        sq = lambda t: t.float().pow(2).sum((1, 2))  # noqa: E731 - per-head squared norm
        n_q, n_kv = w["q"].shape[0], w["k"].shape[0]
        kv_share = ((sq(w["k"]) + sq(w["v"])) / (n_q // n_kv)).repeat_interleave(n_q // n_kv)
        out[i] = (sq(w["q"]) + sq(w["o"]) + kv_share).sqrt().double().cpu()
    assert all(len(v) == layout.layers[i].num_heads for i, v in out.items())
    return out


def _random(model, seed: int) -> dict:
    layout = model_layout(model)
    gen = torch.Generator().manual_seed(seed)
    return {i: torch.rand(layout.layers[i].num_heads, generator=gen, dtype=torch.float64)
            for i in family_for(model.config.model_type).attention_layers(model)}


def score_heads(model: nn.Module, batches: Iterable, criterion: str, seed: int = 0,
                progress: bool = True) -> HeadScores:
    """Score every prunable layer's current heads with one criterion (batches: calibration split only)."""
    if criterion not in CRITERIA:
        raise SentinelError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    layout = model_layout(model)
    tokens = 0
    if criterion == "magnitude":
        raw = _magnitude(model)
    elif criterion == "random":
        raw = _random(model, seed)
    else:
        batches = list(batches)
        if not batches:
            raise SentinelError(f"criterion {criterion} needs calibration batches; got none")
        raw, tokens = {"taylor": _taylor, "activation": _activation, "entropy": _entropy}[criterion](
            model, batches, progress)
    layers = {i: v.numpy().astype(np.float64) for i, v in raw.items()}
    bad = [i for i, v in layers.items() if not np.isfinite(v).all()]
    if bad:
        raise SentinelError(f"{criterion} scores are not finite in layer {bad[0]} (diverged model or fp16 overflow?)")
    return HeadScores(criterion, layout, layers, tokens)


def load_scores(path: str | Path, layout: HeadLayout) -> HeadScores:
    """Read scores written by ``HeadScores.save`` back (for reports and re-selection)."""
    data = json.loads(Path(path).read_text())
    layers = {e["layer"]: np.asarray(e["scores"], dtype=np.float64) for e in data["layers"]}
    return HeadScores(data["criterion"], layout, layers, data.get("tokens", 0))

