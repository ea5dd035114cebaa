"""One vocabulary decision: which rows stay, and what removing the others saves.

``plan_vocab`` joins usage counts, the policy, the ids that always stay and BPE
closure; the result feeds the row surgery, the tokenizer writer and the size
accounting of the pruning selection (rows never used in the domain are free).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from forge_cuda.vocab.bpe import ancestry_closure
from forge_cuda.vocab.policy import VocabPolicy, seed_ids
from forge_cuda.vocab.surgery import row_params
from forge_cuda.vocab.tokenizer_files import backend, required_ids


@dataclass(frozen=True)
class VocabPlan:
    kept: np.ndarray  # sorted current ids that stay (int64)
    rows: int  # rows before the trim
    seen: int  # ids the counted text uses
    closure_added: int  # ids kept only as merge ancestors of kept ids
    row_params: int  # parameters per removed row
    policy: str

    @property
    def removed_rows(self) -> int:
        return self.rows - len(self.kept)

    @property
    def removed_params(self) -> int:
        return self.removed_rows * self.row_params

    def to_dict(self) -> dict:
        return {"policy": self.policy, "rows": self.rows, "kept": int(len(self.kept)), "seen": self.seen,
                "closure_added": self.closure_added, "removed_rows": self.removed_rows,
                "removed_params": self.removed_params}


def plan_vocab(model: nn.Module, hf_tokenizer, counts: np.ndarray, policy: VocabPolicy) -> VocabPlan:
    """The rows ``policy`` keeps given token ``counts`` (one per model row)."""
    rows = int(model.get_input_embeddings().weight.shape[0])
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) != rows:
        raise ValueError(f"{len(counts)} counts for a model with {rows} vocabulary rows")
    seen = int((counts > 0).sum())
    if not policy.trims:
        return VocabPlan(np.arange(rows, dtype=np.int64), rows, seen, 0, row_params(model), str(policy))
    tok = backend(hf_tokenizer)
    required = required_ids(hf_tokenizer, model.config, getattr(model, "generation_config", None))
    seed = seed_ids(counts, policy, required)
    kept = ancestry_closure(tok, seed)
    kept = kept[kept < rows]
    return VocabPlan(kept, rows, seen, int(len(kept) - len(seed)), row_params(model), str(policy))
