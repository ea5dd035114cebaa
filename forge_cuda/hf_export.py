"""Make a saved forged folder loadable by stock transformers and stock ``mlx_lm convert``.

The save hook copies forge_cuda/modeling_sentinel.py and configuration_sentinel.py into
the folder and rewrites config.json's ``model_type``/``architectures``/``auto_map`` to
their classes (names in sentinel.remote_code), so ``AutoModelForCausalLM.from_pretrained(
folder, trust_remote_code=True)`` loads it without Sentinel. It also copies our MLX model
file for the family (runtime_mlx/models/*.py, read as a file, never imported here) as
mlx-lm's ``model_file``: stock ``mlx_lm convert --hf-path folder --trust-remote-code``
then builds the right MLX model (and without the flag stops naming it). Only folders
whose weight shapes differ from the base architecture get any of this: an unpruned or
merely reordered model loads in the stock classes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from forge_cuda import configuration_sentinel, modeling_sentinel
from sentinel.atomic import read_json, write_json
from sentinel.layout import HeadLayout, read_layout
from sentinel.remote_code import HF_MODEL_FILE, MLX_MODEL_FILE, base_config

# family -> our self-contained MLX model module (same files convert --to mlx copies)
MLX_MODULES = {"llama": "decoder.py", "mistral": "decoder.py", "qwen2": "decoder.py", "qwen3": "decoder.py",
               "gpt2": "gpt2.py", "qwen3_5_text": "qwen3_5.py"}
MLX_MODELS_DIR = Path(__file__).resolve().parent.parent / "runtime_mlx" / "models"


def shapes_differ(layout: HeadLayout) -> bool:
    """True when some layer's head counts or MLP width differ from the base model's."""
    base = layout.base
    for layer, width in zip(layout.layers, layout.mlp_widths):
        if (layer.num_heads, layer.num_kv_heads) != (base.num_heads, base.num_kv_heads):
            return True
        if width != base.intermediate_size:
            return True
    return False


def install_model_file(folder: str | Path) -> bool:
    """Copy the modelling file and point config.json at it; False when the folder needs none."""
    folder = Path(folder)
    config = base_config(read_json(folder / "config.json"))
    family = config.get("model_type")
    if family not in modeling_sentinel.CLASSES or not shapes_differ(read_layout(config)):
        return False
    shutil.copyfile(modeling_sentinel.__file__, folder / HF_MODEL_FILE)
    shutil.copyfile(configuration_sentinel.__file__, folder / Path(configuration_sentinel.__file__).name)
    mlx_source = MLX_MODELS_DIR / MLX_MODULES[family]
    if mlx_source.is_file():  # installed with the MLX runtime's sources (always, from this repository)
        shutil.copyfile(mlx_source, folder / MLX_MODEL_FILE)
        config["model_file"] = MLX_MODEL_FILE
    config["model_type"] = modeling_sentinel.forged_model_type(family)
    config["architectures"] = [modeling_sentinel.architecture(family)]
    config["auto_map"] = modeling_sentinel.auto_map(family)
    write_json(folder / "config.json", config)
    return True
