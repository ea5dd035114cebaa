"""How far the vocabulary may go: `keep`, `domain`, or a minimum coverage.

- ``keep``: every row stays (the only choice for SentencePiece tokenizers).
- ``domain``: every id the domain's train + calibration text uses stays.
- a float c in (0, 1]: the most frequent ids stay until they cover a share c of
  those tokens (1.0 = ``domain``).
Ties break toward the lower id, so the choice is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from sentinel.errors import SentinelError


@dataclass(frozen=True)
class VocabPolicy:
    kind: str  # "keep" | "domain" | "coverage"
    coverage: float | None = None

    def __str__(self) -> str:
        return f"{self.coverage:g}" if self.kind == "coverage" else self.kind

    @property
    def trims(self) -> bool:
        return self.kind != "keep"


def parse_vocab_policy(text: str | float) -> VocabPolicy:
    """`keep`, `domain` or a coverage in (0, 1]; anything else is one error line."""
    value = str(text).strip().lower()
    if value in ("keep", "domain"):
        return VocabPolicy(value)
    try:
        share = float(value)
    except ValueError:
        share = None
    if share is None or not 0.0 < share <= 1.0:
        raise SentinelError(f"--vocab {text!r}: use keep, domain, or a minimum coverage in (0, 1] such as 0.999")
    return VocabPolicy("coverage", share)


def seed_ids(counts: np.ndarray, policy: VocabPolicy, required: Iterable[int] = ()) -> np.ndarray:
    """Ids the policy keeps before BPE closure (sorted int64), ``required`` always included."""
    counts = np.asarray(counts, dtype=np.int64)
    if policy.kind == "keep":
        return np.arange(len(counts), dtype=np.int64)
    seen = np.flatnonzero(counts > 0)
    if policy.kind == "coverage" and policy.coverage < 1.0 and len(seen):
        order = seen[np.lexsort((seen, -counts[seen]))]  # most frequent first, lower id on ties
        covered = np.cumsum(counts[order]) / counts.sum()
        seen = order[: int(np.searchsorted(covered, policy.coverage - 1e-12)) + 1]
    keep = set(seen.tolist()) | {int(i) for i in required if 0 <= int(i) < len(counts)}
    return np.array(sorted(keep), dtype=np.int64)
