"""One module per family (``ModelArgs`` + ``Model``), looked up by config.json's model_type."""

from __future__ import annotations

import importlib

from sentinel.errors import SentinelError

# model_type -> module under runtime_mlx.models (mistral shares llama's, as in mlx-lm).
FAMILIES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gpt2": "gpt2",
            "qwen3_5": "qwen3_5", "qwen3_5_text": "qwen3_5"}
# a forged HF folder converted by stock `mlx_lm convert` keeps its sentinel_<family> model_type
FAMILIES.update({f"sentinel_{name}": module for name, module in list(FAMILIES.items()) if name != "qwen3_5"})


def get_model_classes(config: dict):
    """The (Model, ModelArgs) pair for a config: the hook mlx-lm's loader calls."""
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise SentinelError(f"unsupported model family {model_type!r}; the Sentinel runtime supports "
                            f"{', '.join(sorted(FAMILIES))}")
    module = importlib.import_module(f"runtime_mlx.models.{FAMILIES[model_type]}")
    return module.Model, module.ModelArgs
