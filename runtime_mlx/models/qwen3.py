"""Qwen3 (per-head RMSNorm on queries and keys, RoPE base 1e6) with per-layer heads: the shared decoder (its ModelArgs reads the family from model_type)."""

from runtime_mlx.models.decoder import Model, ModelArgs  # noqa: F401  (mlx-lm looks up Model here)
