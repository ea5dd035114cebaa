"""The NF4 tier (QLoRA-style): a 4-bit copy of the base for training, deltas merged into the real weights.

The master weights stay in bf16 (on CPU when the GPU is small), so pruning and
defrag act on real weights, never on re-quantized ones.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

SKIP = ("lm_head",)


def bitsandbytes_available() -> tuple[bool, str]:
    """Whether the NF4 path can run here, and why not (printed when GPU tests are skipped)."""
    if not torch.cuda.is_available():
        return False, "no CUDA device: bitsandbytes NF4 kernels need an NVIDIA GPU"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # import errors of a broken CUDA setup come in many types
        return False, f"bitsandbytes unusable ({e.__class__.__name__}: {e})"
    return True, ""


def quantized_copy(master: nn.Module, device: torch.device, compute_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """An NF4 copy of ``master`` on ``device``: every Linear except lm_head becomes bnb Linear4bit."""
    import bitsandbytes as bnb

    ok, why = bitsandbytes_available()
    if not ok:
        raise RuntimeError(why)
    model = copy.deepcopy(master).to(compute_dtype)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and name not in SKIP:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
                if child.bias is not None:
                    q.bias = nn.Parameter(child.bias.data.cpu(), requires_grad=False)
                setattr(parent, name, q)
    return model.to(device)  # Params4bit quantizes on the move to CUDA


@torch.no_grad()
def merge_lora_into(master: nn.Module, peft_model: nn.Module, adapter: str = "default") -> int:
    """Add every LoRA layer's delta (B @ A * scale) to the matching master weight; returns layers merged."""
    from peft.tuners.lora import LoraLayer

    params = dict(master.named_parameters())
    merged = 0
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            key = name.removeprefix("base_model.model.") + ".weight"
            target = params[key]
            target.add_(module.get_delta_weight(adapter).to(target.device, target.dtype))
            merged += 1
    return merged
