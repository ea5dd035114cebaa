"""The NF4 tier (QLoRA-style): a 4-bit copy of the base for training, deltas merged into the real weights.

The master weights stay in bf16 (on CPU when the GPU is small), so pruning and
defrag act on real weights, never on re-quantized ones.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: forge_cuda/__init__ imports this module
    import torch
    from torch import nn

SKIP = ("lm_head",)
CPU_KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward"


def _not_cpu_kernel_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(CPU_KERNEL_NOTICE)


def quiet_bitsandbytes() -> None:
    """Drop bitsandbytes' import-time WARNING about its optional CPU 4-bit kernel ('kernels' package).

    peft imports bitsandbytes whenever it is installed, so every CPU forge printed it although
    4-bit weights run only on CUDA here (the nf4 tier); any other bitsandbytes message still shows."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if _not_cpu_kernel_notice not in logger.filters:
        logger.addFilter(_not_cpu_kernel_notice)


def bitsandbytes_available() -> tuple[bool, str]:
    """Whether the NF4 path can run here, and why not (printed when GPU tests are skipped)."""
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device: bitsandbytes NF4 kernels need an NVIDIA GPU"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # import errors of a broken CUDA setup come in many types
        return False, f"bitsandbytes unusable ({e.__class__.__name__}: {e})"
    return True, ""


def quantized_copy(master: nn.Module, device: torch.device, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """An NF4 copy of ``master`` on ``device``: every Linear except lm_head becomes bnb Linear4bit
    (compute in ``compute_dtype``, bfloat16 by default)."""
    import bitsandbytes as bnb
    import torch
    from torch import nn

    compute_dtype = compute_dtype or torch.bfloat16
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


def merge_lora_into(master: nn.Module, peft_model: nn.Module, adapter: str = "default") -> int:
    """Add every LoRA layer's delta (B @ A * scale) to the matching master weight; returns layers merged."""
    import torch
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        return _merge(master, peft_model, adapter, LoraLayer)


def _merge(master, peft_model, adapter: str, lora_layer) -> int:
    params = dict(master.named_parameters())
    merged = 0
    for name, module in peft_model.named_modules():
        if isinstance(module, lora_layer) and adapter in module.lora_A:
            key = name.removeprefix("base_model.model.") + ".weight"
            target = params[key]
            target.add_(module.get_delta_weight(adapter).to(target.device, target.dtype))
            merged += 1
    return merged
