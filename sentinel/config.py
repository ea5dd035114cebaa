"""The one reader of config.json every side uses: the file itself, the decoder block, the family.

``read_config`` turns a folder (or the file) into a dict or one line saying why it cannot;
``text_config`` finds the decoder block that multimodal wrappers (qwen3_5) nest under
``text_config``; ``family_config`` is what the forge loader and the converters read: a forged
folder's ``sentinel_<family>`` seen as its base family (sentinel.remote_code). Geometry is read
from the result by ``sentinel.layout.attention_shape`` and checked by ``sentinel.validate``.
Pure Python: no torch, no mlx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from sentinel.errors import SentinelError

MAX_CONTEXT = 1 << 24  # the longest context (tokens) any command accepts: 16M, far above any real model


def read_config(folder: str | Path) -> dict:
    """config.json of ``folder`` (or the config file itself) as a dict, or one line saying why it cannot be."""
    path = Path(folder)
    if path.is_dir() or not path.exists():
        path = path / "config.json"
    if not path.is_file():
        raise SentinelError(f"{folder} is not a model folder (no config.json)")
    try:
        config = json.loads(path.read_bytes())
    except PermissionError:
        raise SentinelError(f"cannot read {path} (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SentinelError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise SentinelError(f"{path} must hold a JSON object, not a {type(config).__name__}")
    return config


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal wrappers (e.g. qwen3_5) nest the decoder under ``text_config``."""
    inner = config.get("text_config")
    return inner if isinstance(inner, Mapping) else config


def family_config(folder: str | Path) -> dict:
    """A folder's config as its base family reads it (``sentinel_llama`` -> ``llama``, no auto_map)."""
    from sentinel.remote_code import base_config

    return base_config(read_config(folder))
