"""What to prune and how: one options object for `sentinel prune` and every forge cycle, checked when built.

Built in the CLI before anything is resolved or loaded, so a bad value or a bad
combination is one error line, not a failure after minutes of training. This
module imports neither torch nor the model code: the CLI builds it cheaply.

How much is said one of two ways: a size target (``target_params``, a fraction of
the base parameters, split over heads and MLP channels by importance per
parameter) or explicit per-kind levels (``level`` for query heads, ``mlp_level``
for MLP channels). A size target takes precedence over the levels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sentinel.errors import SentinelError

CRITERIA = ("taylor", "activation", "entropy", "magnitude", "random")
NORMALIZATIONS = ("none", "l2", "max")
MODES = ("query", "group", "auto")  # query: keep KV heads; group: drop whole KV groups; auto: both
SCOPES = ("global", "layer")
BALANCES = ("kind", "layer", "none")
HEAD_ONLY_CRITERIA = ("entropy",)  # attention-probability criteria cannot score MLP channels


@dataclass(frozen=True)
class PruneOptions:
    criterion: str = "taylor"
    level: float = 0.33  # query heads removed (explicit mode), fraction of the base heads
    mode: str = "auto"
    min_heads: int = 1
    scope: str = "global"  # explicit head level: rank heads over all layers, or per layer
    normalize: str = "l2"  # explicit head level: per-layer score normalisation
    seed: int = 0
    target_params: float | None = None  # fraction of the base parameters to keep (size-target mode)
    mlp_level: float = 0.0  # MLP channels removed (explicit mode)
    min_channels: float = 0.1  # fraction of the base MLP width every layer keeps
    channel_group: int = 64  # channels removed together (shrunk for tiny models)
    refit: bool = True  # least-squares refit of o_proj/down_proj on calibration activations (pruning.refit)
    balance: str = "layer"  # size target: how head and channel scores are made comparable (pruning.search)
    mitosis_rounds: int = 0  # clone rounds per layer after pruning (one clone per kept KV group per round)
    batch_size: int = 4  # calibration windows per scoring batch
    vocab: str = "keep"  # token rows: keep | domain | a minimum coverage (forge_cuda.vocab.policy)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The unit kinds these options prune (and so must score)."""
        if self.target_params is not None:
            return ("heads", "channels")
        return tuple(k for k, on in (("heads", self.level > 0), ("channels", self.mlp_level > 0)) if on) or ("heads",)

    def __post_init__(self):
        """Fail on bad options before minutes of loading and scoring, not after."""
        self._check_choices()
        self._check_numbers()
        self._check_combinations()

    @property
    def vocab_policy(self):
        """The parsed ``vocab`` policy (forge_cuda.vocab.policy.VocabPolicy)."""
        from forge_cuda.vocab.policy import parse_vocab_policy  # numpy only

        return parse_vocab_policy(self.vocab)

    def _check_choices(self) -> None:
        self.vocab_policy  # one error line for a bad --vocab
        choices = {"criterion": CRITERIA, "mode": MODES, "scope": SCOPES, "normalize": NORMALIZATIONS,
                   "balance": BALANCES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SentinelError(f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(allowed)}")

    def _check_numbers(self) -> None:
        if not 0.0 <= self.level < 1.0:  # NaN fails every comparison, so it lands here too
            raise SentinelError(f"level must be a fraction in [0, 1), got {self.level}")
        if self.target_params is not None and not 0.0 < self.target_params <= 1.0:
            raise SentinelError(f"target_params must be a fraction in (0, 1], got {self.target_params}")
        if not 0.0 <= self.mlp_level < 1.0:
            raise SentinelError(f"mlp_level must be a fraction in [0, 1), got {self.mlp_level}")
        if not 0.0 < self.min_channels <= 1.0:
            raise SentinelError(f"min_channels must be a fraction in (0, 1], got {self.min_channels}")
        for name in ("min_heads", "channel_group", "batch_size"):
            if getattr(self, name) < 1:
                raise SentinelError(f"{name} must be at least 1")
        if self.mitosis_rounds < 0:
            raise SentinelError("mitosis_rounds must be at least 0")

    def _check_combinations(self) -> None:
        if self.criterion in HEAD_ONLY_CRITERIA and "channels" in self.kinds:
            why = ("a size target also cuts MLP channels" if self.target_params is not None
                   else "--mlp-level cuts MLP channels")
            raise SentinelError(f"{self.criterion} scores attention heads only and {why}; use taylor or activation, "
                                "or explicit --prune-level without --mlp-level")
        if self.mitosis_rounds and self.target_params is not None:
            raise SentinelError("mitosis regrows parameters, so it cannot aim at a size target (--target-params, "
                                "--target-bytes, or the default 0.75); give --prune-level instead")
        if self.mitosis_rounds and not self.level > 0:
            raise SentinelError("mitosis clones the best surviving heads: it needs --prune-level above 0")

    def to_dict(self) -> dict:
        return asdict(self)


def finite(value: float | None, flag: str) -> float | None:
    """``value`` unless it is NaN or infinite (click's ranges let NaN through)."""
    if value is not None and not math.isfinite(value):
        raise SentinelError(f"{flag} must be a number, got {value}")
    return value
