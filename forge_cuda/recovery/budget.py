"""``--budget``: how much recovery the forged track gets, in wall time or in tokens, and how it is spread.

``45m`` / ``1.5h`` / ``600s`` is wall time; ``200k`` / ``1.5M`` / ``300000`` is tokens (a token
is one position of a training window: windows x seq_len). Lower-case ``m`` is minutes,
upper-case ``M`` is millions of tokens.

The budget is split evenly over the cycles; within a cycle, ``blocklocal_share`` of it
goes to block-local distillation (every block trains on the same windows: a step of
``batch`` windows counts ``batch x seq_len`` tokens once, like one pass through the
model) and the rest to global KD. A wall-time budget gives each phase its seconds
(block-local: per block, the teacher-state cache's filling taken out of it) and lets the learning-rate schedule
follow the clock; a token budget gives exact step counts, so such runs repeat
bit for bit. The unpruned control then trains, on labels, for as many tokens as the
forged track used in that cycle. Stage 0 (the teacher) is not part of the budget.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sentinel.errors import SentinelError

_TIME = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_TOKENS = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MAX_STEPS = 10**9  # the step cap of a wall-time phase (the clock stops it first)


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds / 60:g} min of recovery"
        return f"{self.tokens:,} recovery tokens"

    def to_dict(self) -> dict:
        return asdict(self)


def parse_budget(text: str) -> Budget:
    """``45m`` -> 2700 s; ``200k`` -> 200,000 tokens; anything else is one error line."""
    match = _PATTERN.match(str(text))
    unit = match.group(2) if match else None
    if match is None or (unit not in _TIME and unit not in _TOKENS):
        raise SentinelError(f"--budget {text!r}: use wall time (45m, 1.5h, 600s) or tokens (200k, 1.5M, 300000)")
    number = float(match.group(1))
    if number <= 0:
        raise SentinelError(f"--budget {text!r} must be more than zero")
    if unit in _TIME:
        return Budget(seconds=number * _TIME[unit])
    return Budget(tokens=int(number * _TOKENS[unit]))


@dataclass(frozen=True)
class CyclePlan:
    """One cycle's share: steps (token budgets) or seconds (wall time) for block-local and KD."""

    cycle: int
    blocklocal_steps: int
    kd_steps: int
    blocklocal_seconds_per_block: float | None = None
    kd_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def plan_budget(budget: Budget, cycles: int, tokens_per_step: int, blocklocal_share: float,
                blocks: int, blocklocal_tokens_per_step: int | None = None) -> list[CyclePlan]:
    """Cycle k (1..cycles) gets 1/cycles of the budget (a token remainder goes to the last cycle).

    ``tokens_per_step``: a KD step's tokens (batch x grad_accum x seq_len); block-local steps
    take ``blocklocal_tokens_per_step`` (batch x seq_len; default the same).
    """
    bl_per_step = blocklocal_tokens_per_step or tokens_per_step
    if not 0 <= blocklocal_share <= 1:
        raise SentinelError(f"the block-local share {blocklocal_share} must be within [0, 1]")
    plans = []
    for cycle in range(1, cycles + 1):
        if budget.seconds is not None:
            share = budget.seconds / cycles
            bl = share * blocklocal_share
            plans.append(CyclePlan(cycle, MAX_STEPS if bl else 0, MAX_STEPS, bl / blocks if bl else None,
                                   share - bl))
            continue
        tokens = budget.tokens // cycles + (budget.tokens % cycles if cycle == cycles else 0)
        bl_tokens = round(tokens * blocklocal_share)
        plans.append(CyclePlan(cycle, bl_tokens // bl_per_step, (tokens - bl_tokens) // tokens_per_step))
    return plans
