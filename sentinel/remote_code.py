"""Names a forged HF folder uses so stock transformers asks for ``trust_remote_code``.

A forged folder's config.json says ``model_type: sentinel_<family>`` and
``architectures: [Sentinel<Arch>]`` and carries ``auto_map`` pointing at the
modelling file next to it (forge_cuda/modeling_sentinel.py). Stock transformers does
not know the model type, so without ``trust_remote_code=True`` it stops with an error
that names the flag, instead of loading the base class with mismatched shapes. Our own
readers (forge loader, converters) see the base family through ``base_config``.
Pure Python: the contract package imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

PREFIX = "sentinel_"
ARCH_PREFIX = "Sentinel"
HF_MODEL_FILE = "modeling_sentinel.py"
MLX_MODEL_FILE = "sentinel_model.py"  # mlx-lm's model_file (runtime_mlx.stock writes the same name)


def base_model_type(model_type: Any) -> Any:
    """``sentinel_llama`` -> ``llama``; any other value unchanged."""
    if isinstance(model_type, str) and model_type.startswith(PREFIX):
        return model_type[len(PREFIX):]
    return model_type


def is_forged_config(config: Mapping[str, Any]) -> bool:
    return base_model_type(config.get("model_type")) != config.get("model_type")


def base_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The stock view of a config.json dict: base model_type/architectures, no auto_map/model_file."""
    out = copy.deepcopy(dict(config))
    if not is_forged_config(out):
        return out
    out["model_type"] = base_model_type(out["model_type"])
    archs = out.get("architectures")
    if isinstance(archs, list):
        out["architectures"] = [a[len(ARCH_PREFIX):] if isinstance(a, str) and a.startswith(ARCH_PREFIX) else a
                                for a in archs]
    out.pop("auto_map", None)
    out.pop("model_file", None)  # mlx-lm's hook onto the MLX model file next to it
    return out
