"""Vocabulary rows as one global part of the pruning search (``Space.build(..., extra=[...])``).

The policy already decided which rows may go (never-used ids for ``domain``; the
rarest ids beyond the coverage for a float), so removing them costs nothing the
user did not allow: one free move of score 0, which the greedy search takes first (even past the target); the
heads and channels then supply the rest of the size target. The part records
nothing in the layout: ``restrict_vocab(model, plan.kept)`` does the row surgery.
"""

from __future__ import annotations

from forge_cuda.pruning.space import Move
from forge_cuda.vocab.plan import VocabPlan
from sentinel.layout import HeadLayout


class VocabPart:
    """The rows a VocabPlan removes, offered as a single free move."""

    def __init__(self, plan: VocabPlan):
        self.plan = plan
        self.removed = {"vocab_rows": 0}

    def moves(self, part: int, space) -> list[Move]:
        if self.removed["vocab_rows"] or not self.plan.removed_rows:
            return []
        return [Move(part, "vocab_rows", self.plan.removed_params, 0.0, self.plan.removed_rows, free=True)]

    def apply(self, move: Move) -> None:
        self.removed["vocab_rows"] += move.units

    def returnable(self, part: int) -> Move | None:
        return None

    def give_back(self) -> None:
        raise RuntimeError("vocabulary rows are removed in one move and never given back")

    def write(self, layout: HeadLayout, new: HeadLayout) -> HeadLayout:
        return new
