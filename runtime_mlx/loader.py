"""Open a converted MLX folder with our per-layer-head classes through mlx-lm's own loader.

Going through ``mlx_lm.utils.load_model`` keeps everything mlx-lm does on load
(quantized layers from ``config["quantization"]``, lazy weights, sanitize), so
the returned model works unchanged with mlx-lm's generate, caches and server.
"""

from __future__ import annotations

import glob
from pathlib import Path

from sentinel.errors import SentinelError
from sentinel.models import EMBEDDED
from sentinel.paths import mlx_dir


def convert_hint(name: str) -> str:
    return f"sentinel convert {name} --to mlx"


def resolve_mlx_folder(model: str | Path) -> Path:
    """A MODEL argument -> a converted MLX folder, or one line saying what to run first.

    Embedded names (e.g. smollm2-135m) resolve to their converted folder in
    ``$SENTINEL_HOME/mlx`` when it exists.
    """
    name = str(model)
    path = Path(name).expanduser()
    if not path.exists():
        if name in EMBEDDED:
            found = sorted(mlx_dir().glob(f"{name}-*")) if mlx_dir().exists() else []
            found = [p for p in found if (p / "config.json").is_file()]
            if found:
                return found[0]
            raise SentinelError(f"{name} is not converted to MLX yet: run `{convert_hint(name)}`")
        raise SentinelError(f"model folder {path} not found")
    if not (path / "config.json").is_file():
        raise SentinelError(f"{path} is not a model folder (no config.json)")
    if not glob.glob(str(path / "model*.safetensors")):
        raise SentinelError(f"{path} is not a converted MLX folder (no model*.safetensors): "
                            f"run `{convert_hint(name)}`")
    return path


def load_model(path: str | Path, lazy: bool = True, strict: bool = True):
    """Build our model class for the folder and load its weights (lazily by default)."""
    from mlx_lm.utils import load_model as mlx_load_model

    from runtime_mlx.models import get_model_classes

    folder = resolve_mlx_folder(path)
    try:
        # model_file=None: a folder prepared for stock tools still loads with our classes here.
        model, _ = mlx_load_model(folder, lazy=lazy, strict=strict, model_config={"model_file": None},
                                  get_model_classes=get_model_classes)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SentinelError(f"{folder}: weights do not fit the model in config.json ({first}); "
                            f"is it a converted MLX folder? (`{convert_hint(folder)}`)") from None
    return model


def load(path: str | Path, lazy: bool = True):
    """(model, tokenizer) like ``mlx_lm.load``; the tokenizer is mlx-lm's TokenizerWrapper."""
    from mlx_lm.utils import load_config, load_tokenizer

    folder = resolve_mlx_folder(path)
    model = load_model(folder, lazy=lazy)
    eos = load_config(folder).get("eos_token_id")
    return model, load_tokenizer(folder, eos_token_ids=eos)
