"""Make a saved forged folder loadable by stock transformers (``trust_remote_code=True``).

The save hook copies forge_cuda/modeling_sentinel.py into the folder and rewrites
config.json's ``model_type``/``architectures``/``auto_map`` to its classes (names in
sentinel.remote_code). Only folders whose weight shapes differ from the base
architecture get it: an unpruned or merely reordered model loads in the stock class.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from forge_cuda import modeling_sentinel
from sentinel.atomic import read_json, write_json
from sentinel.layout import HeadLayout, read_layout
from sentinel.remote_code import HF_MODEL_FILE, base_config


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
    config["model_type"] = modeling_sentinel.forged_model_type(family)
    config["architectures"] = [modeling_sentinel.architecture(family)]
    config["auto_map"] = modeling_sentinel.auto_map(family)
    write_json(folder / "config.json", config)
    return True
