"""Memory tiers: full-precision LoRA when the model fits the GPU comfortably, NF4 base + LoRA when not.

The pick is a rule on numbers the user can check (model bytes vs GPU bytes),
printed and reported with its reason; ``--tier`` overrides it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sentinel.errors import SentinelError

TIERS = ("full", "nf4")
GiB = 2**30


@dataclass(frozen=True)
class Tier:
    name: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def full_lora_bytes(params: int) -> int:
    """Rough peak of bf16 LoRA training: weights + their gradients' worth of activations/optimizer slack."""
    return int(params * 2 * 1.6 + 2 * GiB)


def choose_tier(params: int, device_type: str, gpu_bytes: int | None, requested: str = "auto") -> Tier:
    """Pick (or validate) the tier for a model of ``params`` on a device with ``gpu_bytes`` of memory."""
    if requested not in ("auto", *TIERS):
        raise SentinelError(f"unknown tier {requested!r}; choose auto, {', '.join(TIERS)}")
    if device_type != "cuda":
        if requested == "nf4":
            raise SentinelError("the nf4 tier needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                                "this machine has none: use --tier full")
        return Tier("full", f"{device_type}: fp32 weights (NF4 is CUDA-only)")
    need = full_lora_bytes(params)
    budget = int(0.9 * gpu_bytes) if gpu_bytes else 0
    if requested == "full":
        return Tier("full", f"requested; full-precision training needs ~{need / GiB:.1f} GiB of {gpu_bytes / GiB:.1f} GiB")
    if requested == "nf4":
        return Tier("nf4", "requested")
    if need <= budget:
        return Tier("full", f"~{need / GiB:.1f} GiB needed fits 90% of {gpu_bytes / GiB:.1f} GiB")
    return Tier("nf4", f"~{need / GiB:.1f} GiB needed exceeds 90% of {gpu_bytes / GiB:.1f} GiB: NF4 base + LoRA")
