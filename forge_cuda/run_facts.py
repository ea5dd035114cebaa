"""What the forge states about a run's machine and models: the device it runs on, each row's size numbers."""

from __future__ import annotations

import torch

from forge_cuda import distributed
from forge_cuda.checkpoint import param_count
from forge_cuda.pruning.defrag import model_layout
from forge_cuda.pruning.space import kv_bytes_per_token
from sentinel.errors import SentinelError


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return distributed.local_device()
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SentinelError(f"--device {requested}: no CUDA device is visible on this machine")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SentinelError(f"--device {requested!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SentinelError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise SentinelError(f"--device {requested}: the forge runs on cpu or cuda")
    return device


def model_numbers(model) -> dict:
    """Size numbers reported per row: params, bytes as stored, KV bytes per token (fp16 cache)."""
    layout = model_layout(model)
    kv_fp16 = kv_bytes_per_token(model, layout, 2)
    params = param_count(model)
    dtype_bytes = next(model.parameters()).element_size()
    return {"params": params, "bytes": params * dtype_bytes, "bytes_fp16": params * 2,
            "kv_bytes_per_token_fp16": kv_fp16, "q_heads": layout.q_counts, "kv_heads": layout.kv_counts,
            "q_heads_total": sum(layout.q_counts), "kv_heads_total": sum(layout.kv_counts),
            "mlp_channels": layout.mlp_widths, "mlp_channels_total": sum(w or 0 for w in layout.mlp_widths),
            "vocab_size": model.get_input_embeddings().weight.shape[0], "layout": layout.to_dict()}
