"""Where Sentinel keeps downloads and converted models (``SENTINEL_HOME`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SENTINEL_HOME`` or ``~/.cache/sentinel``."""
    env = os.environ.get("SENTINEL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sentinel"


def models_dir() -> Path:
    """HF-format models pulled or imported by name."""
    return cache_root() / "models"


def mlx_dir() -> Path:
    """MLX folders converted from cached models."""
    return cache_root() / "mlx"
