"""The MLX side: per-layer-head model definitions for mlx-lm. Never imports torch."""
