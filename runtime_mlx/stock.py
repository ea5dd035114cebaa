"""Make a converted forged folder openable by stock mlx-lm tools, with only mlx-lm installed.

mlx-lm builds its own class for a config's model_type, which cannot hold
irregular heads. Its escape hatch is a ``model_file`` key in config.json naming
a Python file in the folder that defines ``Model`` and ``ModelArgs``; stock tools
run it only with ``--trust-remote-code`` (without it they stop with an error
naming that flag). The file written here is a copy of our own model module for
the family (runtime_mlx/models/decoder.py, gpt2.py or qwen3_5.py: mlx + mlx-lm
only), so the folder runs where Sentinel is not installed.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from sentinel.atomic import read_json, write_json
from sentinel.errors import SentinelError

MODEL_FILE = "sentinel_model.py"


def family_module_file(model_type: str) -> Path:
    """The self-contained source file of our MLX model for a model_type."""
    from runtime_mlx.models import FAMILIES

    if model_type not in FAMILIES:
        raise SentinelError(f"unsupported model family {model_type!r}; the Sentinel runtime supports "
                            f"{', '.join(sorted(FAMILIES))}")
    module = importlib.import_module(f"runtime_mlx.models.{FAMILIES[model_type]}")
    return Path(importlib.import_module(module.Model.__module__).__file__)


def install_model_file(folder: str | Path) -> Path:
    """Copy the family's model file as ``sentinel_model.py``, point config.json's ``model_file`` at it."""
    folder = Path(folder)
    config = read_json(folder / "config.json")
    source = family_module_file(config.get("model_type"))
    path = folder / MODEL_FILE
    tmp = path.with_suffix(".py.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(path)
    config["model_file"] = MODEL_FILE
    write_json(folder / "config.json", config)
    return path


def stock_command(folder: str | Path, tool: str = "generate") -> str:
    """The stock CLI line for a prepared folder, for docs and messages."""
    return f"python -m mlx_lm {tool} --model {folder} --trust-remote-code"
