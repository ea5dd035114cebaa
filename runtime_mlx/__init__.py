"""The MLX side: per-layer-head model definitions for mlx-lm. Never imports torch.

``load(path) -> (model, tokenizer)`` and ``load_model(path) -> model`` open a
converted (forged or plain) MLX folder with our classes through mlx-lm's loader.
"""

from runtime_mlx.loader import check_mlx_folder, load, load_model

__all__ = ["check_mlx_folder", "load", "load_model"]
