"""Make a converted forged folder openable by stock mlx-lm tools.

mlx-lm builds its own class for a config's model_type, which cannot hold
irregular heads. Its escape hatch is a ``model_file`` key in config.json naming
a Python file in the folder that defines ``Model`` and ``ModelArgs``; stock tools
run it only with ``--trust-remote-code``. The file written here is a three-line
shim onto runtime_mlx, so the folder needs Sentinel's runtime installed next to
mlx-lm (``pip install 'sentinel-forge[mlx]'``) but no copy of our code.
"""

from __future__ import annotations

from pathlib import Path

from sentinel.atomic import read_json, write_json
from sentinel.errors import SentinelError

MODEL_FILE = "sentinel_model.py"

SHIM = '''"""Sentinel per-layer-head model for stock mlx-lm tools (run them with --trust-remote-code)."""

try:
    from runtime_mlx.models import get_model_classes
except ImportError as e:  # stock mlx-lm without Sentinel's runtime
    raise ImportError("this folder holds a Sentinel model with per-layer heads: "
                      "pip install 'sentinel-forge[mlx]' next to mlx-lm") from e

Model, ModelArgs = get_model_classes({{'model_type': {model_type!r}}})
'''


def install_model_file(folder: str | Path) -> Path:
    """Write ``sentinel_model.py`` and point config.json's ``model_file`` at it; return the file."""
    from runtime_mlx.models import FAMILIES

    folder = Path(folder)
    config = read_json(folder / "config.json")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise SentinelError(f"unsupported model family {model_type!r}; the Sentinel runtime supports "
                            f"{', '.join(sorted(FAMILIES))}")
    path = folder / MODEL_FILE
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(SHIM.format(model_type=model_type))
    tmp.replace(path)
    config["model_file"] = MODEL_FILE
    write_json(folder / "config.json", config)
    return path


def stock_command(folder: str | Path, tool: str = "generate") -> str:
    """The stock CLI line for a prepared folder, for docs and messages."""
    return f"python -m mlx_lm {tool} --model {folder} --trust-remote-code"
