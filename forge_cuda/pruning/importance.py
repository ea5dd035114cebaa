"""How much each prunable unit (attention head, MLP channel) matters, measured on calibration batches.

Scores are "higher = more important" for every criterion, one 1-D array per
prunable layer over the layer's CURRENT physical units (layers may differ in
size after pruning or mitosis). ``UnitScores.grid()`` gives the heatmap form:
[layers, units] indexed by original id, NaN where a unit is gone. Both kinds are
measured the same way, at the input of the layer that reads them (o_proj for
heads, down_proj for channels), so one pass scores both and their numbers share
units: loss change (taylor) or norm of the contribution to the residual stream
(activation). That is what lets one ranking compare a head with a channel.

Criteria (see docs/PRUNING.md):
- ``taylor``: mean over examples of |dL/dg| for a gate g=1 on the unit's input
  to its reader (Michel et al. 2019), i.e. the first-order loss change of removing it.
- ``activation``: mean token norm of the unit's contribution to its reader's
  output (its input slice through its own columns; Minitron-style: for a channel,
  mean |act| times the norm of its down_proj column).
- ``entropy``: attention focus 1 - H(p)/log(#keys), averaged over query tokens
  (the seed's criterion, inverted so diffuse heads score low).
- ``magnitude``: norm of the head's q rows and o columns plus its share of its
  KV head's k/v rows; for a channel, its gate/up rows and down column (weak by
  published evidence; kept as a baseline). Entropy scores heads only.
- ``random``: seeded uniform scores (the control).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from forge_cuda.families import UNIT_KINDS, family_for
from forge_cuda.pruning.calibration import progress_bar, scoring_mode, unpack_batch
from forge_cuda.pruning.defrag import model_layout
from forge_cuda.pruning.hooks import hook_units
from forge_cuda.pruning.options import CRITERIA, NORMALIZATIONS
from sentinel.atomic import write_json
from sentinel.errors import SentinelError
from sentinel.layout import HeadLayout

def unit_ids(layout: HeadLayout, index: int, kind: str) -> tuple[int, ...]:
    """Original ids of a layer's current units in physical order (query heads or MLP channels)."""
    return layout.layers[index].q_heads if kind == "heads" else layout.channels(index)


@dataclass
class UnitScores:
    """Per-layer scores over one kind of physical unit, plus the layout that maps them to original ids."""

    criterion: str
    layout: HeadLayout
    layers: dict[int, np.ndarray] = field(default_factory=dict)
    tokens: int = 0
    kind: str = "heads"

    def grid(self) -> np.ndarray:
        """[num_layers, width] float array indexed by original id (clone ids extend the width), NaN = absent."""
        if self.kind == "heads":
            width = max([self.layout.base.num_heads] + [max(l.q_heads) + 1 for l in self.layout.layers])
        else:
            width = self.layout.base.intermediate_size or 0
        grid = np.full((self.layout.base.num_layers, width), np.nan)
        for i, scores in self.layers.items():
            grid[i, list(unit_ids(self.layout, i, self.kind))] = scores
        return grid

    def normalized(self, how: str = "l2") -> "UnitScores":
        """Divide each layer by its L2 norm or max, so layers compete on equal terms (Michel et al.)."""
        if how not in NORMALIZATIONS:
            raise SentinelError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALIZATIONS)}")
        out = {}
        for i, s in self.layers.items():
            denom = {"none": 1.0, "l2": float(np.linalg.norm(s)), "max": float(np.abs(s).max())}[how]
            out[i] = s / denom if denom > 0 else s.copy()
        return UnitScores(self.criterion, self.layout, out, self.tokens, self.kind)

    def to_dict(self) -> dict:
        return {"criterion": self.criterion, "tokens": self.tokens, "kind": self.kind,
                "layers": [{"layer": i, "units": list(unit_ids(self.layout, i, self.kind)),
                            "scores": [float(v) for v in s]} for i, s in sorted(self.layers.items())]}

    def save(self, folder: str | Path, stem: str | None = None) -> Path:
        """Write ``<stem>.json`` (per-layer lists) and ``<stem>.npy`` (the NaN-padded grid).

        Head scores are ``scores_<criterion>``, channel scores ``channel_scores_<criterion>``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = stem or ("scores" if self.kind == "heads" else "channel_scores") + f"_{self.criterion}"
        write_json(folder / f"{stem}.json", self.to_dict())
        np.save(folder / f"{stem}.npy", self.grid())
        return folder / f"{stem}.json"


def combine(scores: Mapping[str, UnitScores], weights: Mapping[str, float], normalize: str = "l2") -> UnitScores:
    """Weighted sum of per-layer-normalised criteria (e.g. taylor 1.0 + entropy 0.3)."""
    parts = [(scores[name].normalized(normalize), w) for name, w in weights.items()]
    first = parts[0][0]
    layers = {i: sum(w * p.layers[i] for p, w in parts) for i in first.layers}
    name = "+".join(f"{w:g}*{n}" for n, w in weights.items())
    return UnitScores(name, first.layout, layers, first.tokens, first.kind)


def _labels(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Next-token labels that ignore only true padding."""
    return ids if mask is None else ids.masked_fill(mask == 0, -100)


def _zeros(model: nn.Module, layout: HeadLayout, kinds) -> dict[str, dict[int, torch.Tensor]]:
    family = family_for(model.config.model_type)
    return {kind: {i: torch.zeros(len(unit_ids(layout, i, kind)), dtype=torch.float64)
                   for i in family.unit_layers(model, kind)} for kind in kinds}


def _hooks(model: nn.Module, kinds, fn) -> list:
    """One hook per layer and kind; ``fn(kind, layer, units)``."""
    return [h for kind in kinds for h in hook_units(model, lambda i, x, kind=kind: fn(kind, i, x), kind)]


def _taylor(model, batches, progress, kinds) -> tuple[dict, int]:
    acc, gates, examples, tokens = _zeros(model, model_layout(model), kinds), {}, 0, 0

    def gate(kind, i, units):
        g = torch.ones(units.shape[0], *([1] * (units.dim() - 3)), units.shape[-2], 1,
                       device=units.device, dtype=units.dtype, requires_grad=True)
        gates[kind, i] = g
        return units * g

    handles = _hooks(model, kinds, gate)
    try:
        with scoring_mode(model), torch.enable_grad():
            for batch in progress_bar(batches, "taylor", progress):
                ids, mask = unpack_batch(batch, model.device)
                gates.clear()
                loss = model(input_ids=ids, attention_mask=mask, labels=_labels(ids, mask), use_cache=False).loss
                order = sorted(gates)
                grads = torch.autograd.grad(loss, [gates[k] for k in order])
                for (kind, i), g in zip(order, grads):
                    acc[kind][i] += g.detach().abs().reshape(g.shape[0], -1).sum(0).double().cpu()
                examples += ids.shape[0]
                tokens += int(mask.sum()) if mask is not None else ids.numel()
    finally:
        for h in handles:
            h.remove()
    return {kind: {i: v / max(examples, 1) for i, v in layers.items()} for kind, layers in acc.items()}, tokens


def _activation(model, batches, progress, kinds) -> tuple[dict, int]:
    family = family_for(model.config.model_type)
    acc, state = _zeros(model, model_layout(model), kinds), {"w": None}
    gram = {}  # per unit: G = W_u^T W_u, so |x W_u^T|^2 = x G x^T without materialising outputs
    for kind in kinds:
        for i in acc[kind]:
            o = family.unit_out_weights(model, i, kind).float()  # [units, width, out]
            gram[kind, i] = torch.einsum("hdo,heo->hde", o, o)

    def measure(kind, i, units):
        x = units.detach().float()  # [B, T, units, width]
        sq = torch.einsum("bthd,hde,bthe->bth", x, gram[kind, i].to(x.device), x).clamp_min(0).sqrt()
        acc[kind][i] += (sq * state["w"][..., None]).sum((0, 1)).double().cpu()

    handles = _hooks(model, kinds, measure)
    tokens = 0
    try:
        with scoring_mode(model), torch.no_grad():
            for batch in progress_bar(batches, "activation", progress):
                ids, mask = unpack_batch(batch, model.device)
                state["w"] = (mask if mask is not None else torch.ones_like(ids)).float()
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                tokens += int(state["w"].sum())
    finally:
        for h in handles:
            h.remove()
    return {kind: {i: v / max(tokens, 1) for i, v in layers.items()} for kind, layers in acc.items()}, tokens


def _entropy(model, batches, progress, kinds) -> tuple[dict, int]:
    family = family_for(model.config.model_type)
    acc, state, tokens = _zeros(model, model_layout(model), ("heads",))["heads"], {}, 0

    def capture(i):
        def hook(module, args, output):
            p = output[1].detach().float()  # [B, H, T, S] attention probabilities
            ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [B, H, T]
            focus = 1.0 - ent / state["log_keys"][:, None, :]
            acc[i] += (focus * state["w"][:, None, :]).sum((0, 2)).double().cpu()
        return hook

    handles = [family.attention(model, i).register_forward_hook(capture(i)) for i in acc]
    try:
        with scoring_mode(model, attn="eager"), torch.no_grad():
            for batch in progress_bar(batches, "entropy", progress):
                ids, mask = unpack_batch(batch, model.device)
                valid = (mask if mask is not None else torch.ones_like(ids)).float()
                keys = valid.cumsum(-1)  # causal: keys a query token may attend to
                w = valid * (keys >= 2)  # one key has no choice, hence no entropy to measure
                state.update(w=w, log_keys=torch.log(keys.clamp_min(2)))
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                tokens += int(w.sum())
    finally:
        for h in handles:
            h.remove()
    return {"heads": {i: v / max(tokens, 1) for i, v in acc.items()}}, tokens


def _magnitude(model, kinds) -> dict:
    family = family_for(model.config.model_type)
    sq = lambda t: t.float().pow(2).flatten(1).sum(1)  # noqa: E731 - per-unit squared norm
    out = {}
    if "heads" in kinds:
        out["heads"] = {}
        for i in family.attention_layers(model):
            w = family.head_weights(family.attention(model, i))
            n_q, n_kv = w["q"].shape[0], w["k"].shape[0]
            kv_share = ((sq(w["k"]) + sq(w["v"])) / (n_q // n_kv)).repeat_interleave(n_q // n_kv)
            out["heads"][i] = (sq(w["q"]) + sq(w["o"]) + kv_share).sqrt().double().cpu()
    if "channels" in kinds:
        out["channels"] = {i: (sq(family.channel_in_weights(family.mlp(model, i)))
                               + sq(family.unit_out_weights(model, i, "channels"))).sqrt().double().cpu()
                           for i in family.mlp_layers(model)}
    return out


def _random(model, seed: int, kinds) -> dict:
    layout = model_layout(model)
    gen = torch.Generator().manual_seed(seed)
    family = family_for(model.config.model_type)
    return {kind: {i: torch.rand(len(unit_ids(layout, i, kind)), generator=gen, dtype=torch.float64)
                   for i in family.unit_layers(model, kind)} for kind in kinds}


def score_units(model: nn.Module, batches: Iterable, criterion: str, kinds=("heads",), seed: int = 0,
                progress: bool = True) -> dict[str, UnitScores]:
    """Score every prunable layer's current units of the given kinds with one criterion, in one pass.

    ``batches``: the calibration split only. Returns ``{kind: UnitScores}``.
    """
    if criterion not in CRITERIA:
        raise SentinelError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    kinds = tuple(kinds)
    if not kinds or set(kinds) - set(UNIT_KINDS):
        raise SentinelError(f"unit kinds must be among {', '.join(UNIT_KINDS)}, got {kinds}")
    if criterion == "entropy" and "channels" in kinds:
        raise SentinelError("entropy scores attention heads only; use taylor or activation for MLP channels")
    layout = model_layout(model)
    tokens = 0
    if criterion == "magnitude":
        raw = _magnitude(model, kinds)
    elif criterion == "random":
        raw = _random(model, seed, kinds)
    else:
        batches = list(batches)
        if not batches:
            raise SentinelError(f"criterion {criterion} needs calibration batches; got none")
        raw, tokens = {"taylor": _taylor, "activation": _activation, "entropy": _entropy}[criterion](
            model, batches, progress, kinds)
    out = {}
    for kind in kinds:
        layers = {i: v.numpy().astype(np.float64) for i, v in raw[kind].items()}
        bad = [i for i, v in layers.items() if not np.isfinite(v).all()]
        if bad:
            raise SentinelError(f"{criterion} {kind} scores are not finite in layer {bad[0]} "
                                "(diverged model or fp16 overflow?)")
        out[kind] = UnitScores(criterion, layout, layers, tokens, kind)
    return out


def score_heads(model: nn.Module, batches: Iterable, criterion: str, seed: int = 0,
                progress: bool = True) -> UnitScores:
    """Score every prunable layer's current attention heads (``score_units`` for heads only)."""
    return score_units(model, batches, criterion, ("heads",), seed, progress)["heads"]


def load_scores(path: str | Path, layout: HeadLayout) -> UnitScores:
    """Read scores written by ``UnitScores.save`` back (for reports and re-selection)."""
    data = json.loads(Path(path).read_text())
    layers = {e["layer"]: np.asarray(e["scores"], dtype=np.float64) for e in data["layers"]}
    return UnitScores(data["criterion"], layout, layers, data.get("tokens", 0), data.get("kind", "heads"))

