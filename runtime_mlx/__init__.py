"""The MLX side: per-layer-head model definitions for mlx-lm. Never imports torch.

``load(path) -> (model, tokenizer)`` and ``load_model(path) -> model`` open a
converted (forged or plain) MLX folder with our classes through mlx-lm's loader.
"""

from runtime_mlx.loader import load, load_model, resolve_mlx_folder

__all__ = ["load", "load_model", "resolve_mlx_folder"]
