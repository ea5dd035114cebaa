"""Reversible per-head masks on the input side of o_proj, for tests.

Multiplying a head's slice of the o_proj input by 0 silences exactly that head.
Masks are hooks, not weight edits: ``revive`` undoes them, ``commit`` turns them
into a defrag. Tests use them to check that masking equals removing.
"""

from __future__ import annotations

import torch
from torch import nn

from forge_cuda.families import family_for
from forge_cuda.pruning.defrag import defrag, model_layout
from forge_cuda.pruning.hooks import hook_head_outputs
from sentinel.errors import LayoutError
from sentinel.layout import HeadLayout


class HeadGates:
    """Multiply each head's output by a gate (1 = on, 0 = masked) until removed or committed.

    Positions are physical (the head's index in the layer's current matrices).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layout = model_layout(model)
        family = family_for(model.config.model_type)
        self.values = {i: torch.ones(self.layout.layers[i].num_heads) for i in family.attention_layers(model)}
        self._handles = hook_head_outputs(model, self._apply)

    def _apply(self, layer: int, heads: torch.Tensor) -> torch.Tensor | None:
        gate = self.values[layer]
        if bool((gate == 1).all()):
            return None
        return heads * gate.to(heads.device, heads.dtype)[:, None]

    def mask(self, layer: int, positions) -> None:
        self.values[layer][list(positions)] = 0.0

    def revive(self, layer: int, positions=None) -> None:
        """Turn heads back on (all of the layer's heads when ``positions`` is None)."""
        if positions is None:
            self.values[layer].fill_(1.0)
        else:
            self.values[layer][list(positions)] = 1.0

    def mask_to(self, target: HeadLayout) -> None:
        """Mask every head the target layout does not keep (and revive the ones it keeps)."""
        target.validate()
        for i, gate in self.values.items():
            keep = set(target.layers[i].q_heads)
            for p, h in enumerate(self.layout.layers[i].q_heads):
                gate[p] = 1.0 if h in keep else 0.0

    def masked_layout(self) -> HeadLayout:
        """The current layout without masked query heads, and without KV heads left with none.

        Raises LayoutError when the masks break format rule 6 (unequal groups).
        """
        layout = self.layout
        for i, gate in self.values.items():
            layer = layout.layers[i]
            q = tuple(h for p, h in enumerate(layer.q_heads) if gate[p] != 0)
            kv = tuple(k for k in layer.kv_heads if any(layout.kv_group(layer, h) == k for h in q))
            clones = {c: o for c, o in layer.clone_of.items() if c in q}
            layout = layout.replace_layer(i, type(layer)(q, kv, clones, layer.mlp_channels))
        return layout.validate()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def commit(self) -> HeadLayout:
        """Remove the masked heads for good (defrag); the gates are gone afterwards."""
        target = self.masked_layout()
        if any(set(g.tolist()) - {0.0, 1.0} for g in self.values.values()):
            raise LayoutError("only gates of exactly 0 or 1 can be committed")
        self.remove()
        return defrag(self.model, target)

    def __enter__(self) -> "HeadGates":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
