"""Open a converted MLX folder with our per-layer-head classes through mlx-lm's own loader.

Going through ``mlx_lm.utils.load_model`` keeps everything mlx-lm does on load
(quantized layers from ``config["quantization"]``, lazy weights, sanitize), so
the returned model works unchanged with mlx-lm's generate, caches and server.
"""

from __future__ import annotations

import glob
from pathlib import Path

from sentinel.errors import SentinelError
from runtime_mlx.models import FAMILIES
from sentinel.validate import check_model_folder, model_context as config_context, read_config


def convert_hint(name: str) -> str:
    return f"sentinel convert {name} --to mlx"


def check_mlx_folder(model: str | Path) -> Path:
    """A local folder -> itself once checked as a converted MLX folder, or one line saying what to run first.

    Names (e.g. smollm2-135m) are resolved above, by the CLI (sentinel.cli.resolve.resolve_mlx).
    """
    name = str(model)
    path = Path(name).expanduser()
    if not path.exists():
        raise SentinelError(f"model folder {path} not found")
    if not (path / "config.json").is_file():
        raise SentinelError(f"{path} is not a model folder (no config.json)")
    if not glob.glob(str(path / "model*.safetensors")):
        raise SentinelError(f"{path} is not a converted MLX folder (no model*.safetensors): "
                            f"run `{convert_hint(name)}`")
    check_model_folder(path, FAMILIES)
    return path


def model_context(folder: str | Path) -> int | None:
    """The model's context length from its (validated) config.json, when it states one."""
    return config_context(read_config(Path(folder)))


def compute_dtype(model) -> str:
    """The floating dtype most of the model's parameters hold (what its matmuls run in)."""
    from collections import Counter

    import mlx.core as mx
    from mlx.utils import tree_flatten

    floats = Counter(v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating))
    return str(floats.most_common(1)[0][0]).removeprefix("mlx.core.") if floats else "float32"


def on_cpu() -> bool:
    import mlx.core as mx

    return mx.default_device().type == mx.DeviceType.cpu


def use_compute_dtype(model, config: dict, keep_dtype: bool = False) -> str:
    """On MLX's CPU backend, compute a dense fp16/bf16 model in float32 unless ``keep_dtype``.

    MLX's CPU half-precision matmuls are several times slower than float32 through BLAS
    (bench/cpu_compute_dtype.py measures both); on Metal and CUDA nothing changes. Quantized
    models keep their stored dtype. Returns the dtype the model now computes in.
    """
    import mlx.core as mx

    stored = compute_dtype(model)
    if keep_dtype or not on_cpu() or config.get("quantization") or stored not in ("float16", "bfloat16"):
        return stored
    model.set_dtype(mx.float32)
    return "float32"


def load_model(path: str | Path, lazy: bool = True, strict: bool = True, keep_dtype: bool = False):
    """Build our model class for the folder and load its weights (lazily by default); on a CPU
    backend an fp16/bf16 model computes in float32 unless ``keep_dtype`` (``use_compute_dtype``)."""
    from mlx_lm.utils import load_model as mlx_load_model

    from runtime_mlx.models import get_model_classes

    folder = check_mlx_folder(path)
    try:
        # model_file=None: a folder prepared for stock tools still loads with our classes here.
        model, _ = mlx_load_model(folder, lazy=lazy, strict=strict, model_config={"model_file": None},
                                  get_model_classes=get_model_classes)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SentinelError(f"{folder}: weights do not fit the model in config.json ({first}); "
                            f"is it a converted MLX folder? (`{convert_hint(folder)}`)") from None
    use_compute_dtype(model, read_config(folder), keep_dtype)
    return model


def load_tokenizer(folder: Path, tokenizer_config: dict | None = None):
    """mlx-lm's TokenizerWrapper for the folder, or one line when its tokenizer files are unusable."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    import logging

    eos = read_config(folder).get("eos_token_id")
    # A forged HF folder's config.json names remote code (auto_map) that the tokenizer never needs:
    # without trust_remote_code=False transformers stops to ask on stdin (chat's input!), and it logs
    # that config type sentinel_<family> is unknown to it.
    quiet = logging.getLogger("transformers.configuration_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return mlx_load_tokenizer(folder, {"trust_remote_code": False, **(tokenizer_config or {})},
                                  eos_token_ids=eos)
    except (OSError, ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SentinelError(f"{folder}: cannot load its tokenizer ({first})") from None
    finally:
        quiet.setLevel(level)


def load(path: str | Path, lazy: bool = True, keep_dtype: bool = False):
    """(model, tokenizer) like ``mlx_lm.load``; the tokenizer is mlx-lm's TokenizerWrapper."""
    folder = check_mlx_folder(path)
    model = load_model(folder, lazy=lazy, keep_dtype=keep_dtype)
    return model, load_tokenizer(folder)
