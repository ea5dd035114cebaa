"""Multimodal wrapper checkpoints: load, prune and save the text model inside them.

A Qwen3.5 checkpoint as published is a ``Qwen3_5ForConditionalGeneration``: the decoder
under ``model.language_model.*`` (config in ``text_config``), a vision tower under
``model.visual.*``, the output head ``lm_head.weight`` and multi-token-prediction
layers ``mtp.*`` that transformers itself ignores on load. Pruning touches only the
decoder, so the loader builds the plain text model (``Qwen3_5ForCausalLM``) from
``text_config`` and renames the decoder's tensors on the way in.

On save, the text model is written as it is (a ``qwen3_5_text`` folder every tool here
reads) unless the caller asked to keep the vision tower (``vision_policy(keep=True)``,
the CLI's ``--keep-vision``): then the folder is rewritten in the wrapper's own shape,
with the vision tower's tensors copied unchanged. MTP layers are always dropped: they
were trained on the unpruned trunk's hidden states and nothing here runs them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sentinel.errors import SentinelError

_KEEP_VISION = contextvars.ContextVar("sentinel_keep_vision", default=False)
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")


@contextlib.contextmanager
def vision_policy(keep: bool) -> Iterator[None]:
    """Within this block, models loaded from a wrapper folder are saved back with (or without) their vision tower."""
    token = _KEEP_VISION.set(bool(keep))
    try:
        yield
    finally:
        _KEEP_VISION.reset(token)


@dataclass(frozen=True)
class Wrapper:
    """How one multimodal family nests its text model."""

    model_type: str          # the wrapper's model_type
    text_model_type: str     # the text model's own model_type
    text_architecture: str   # the causal-LM class of the text model
    text_prefix: str         # wrapper names of decoder tensors start with this ...
    own_prefix: str          # ... and the text model's names with this
    vision_prefix: str
    dropped: tuple[str, ...]  # prefixes of tensors nobody loads (e.g. MTP layers)

    def text_name(self, key: str) -> str | None:
        """The text model's name of a wrapper tensor; None for vision and MTP tensors."""
        if key.startswith(self.text_prefix):
            return self.own_prefix + key[len(self.text_prefix):]
        if key.startswith((self.vision_prefix, *self.dropped)):
            return None
        return key  # lm_head.weight keeps its name

    def wrapped_name(self, key: str) -> str:
        if key.startswith(self.own_prefix):
            return self.text_prefix + key[len(self.own_prefix):]
        return key

    def text_config(self, raw: dict) -> dict:
        """The text model's config.json dict: ``text_config`` plus what the wrapper keeps at its top level."""
        text = dict(raw["text_config"])
        text["model_type"] = self.text_model_type
        text["architectures"] = [self.text_architecture]
        if "tie_word_embeddings" in raw:  # the wrapper's flag is the one transformers ties by
            text["tie_word_embeddings"] = raw["tie_word_embeddings"]
        for key in ("sentinel_layout", "dtype"):
            if key in raw and key not in text:
                text[key] = raw[key]
        return text


WRAPPERS = {
    "qwen3_5": Wrapper(model_type="qwen3_5", text_model_type="qwen3_5_text", text_architecture="Qwen3_5ForCausalLM",
                       text_prefix="model.language_model.", own_prefix="model.", vision_prefix="model.visual.",
                       dropped=("mtp.", "model.mtp.")),
}


def detect(raw: dict) -> Wrapper | None:
    """The wrapper a config.json dict describes, or None for an ordinary causal-LM folder."""
    wrapper = WRAPPERS.get(raw.get("model_type", ""))
    if wrapper is None or not isinstance(raw.get("text_config"), dict):
        return None
    return wrapper


@dataclass(frozen=True)
class WrapperSource:
    """What a model loaded from a wrapper folder needs to be saved back in that shape."""

    wrapper: Wrapper
    folder: Path
    raw: dict
    keep_vision: bool


def remember(model, wrapper: Wrapper, folder: Path, raw: dict) -> None:
    """Record the wrapper source on the loaded model (read back by ``finish_save``)."""
    model._sentinel_wrapper = WrapperSource(wrapper, Path(folder), raw, _KEEP_VISION.get())


def finish_save(model, tmp: Path) -> None:
    """After ``save_pretrained`` wrote the text model into ``tmp``: rewrap it if the vision tower is kept."""
    source: WrapperSource | None = getattr(model, "_sentinel_wrapper", None)
    if source is None or not source.keep_vision:
        return
    _rewrap(source, Path(tmp))


def _vision_tensors(source: WrapperSource) -> dict:
    from safetensors import safe_open

    from sentinel.weights import weight_files

    out = {}
    for file in weight_files(source.folder):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                if key.startswith(source.wrapper.vision_prefix):
                    out[key] = f.get_tensor(key)
    if not out:
        raise SentinelError(f"{source.folder}: --keep-vision, but the checkpoint has no "
                            f"{source.wrapper.vision_prefix}* tensors")
    return out


def _rewrap(source: WrapperSource, tmp: Path) -> None:
    """Rename the text model's tensors into the wrapper's names, add the vision tower, write the wrapper config."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from sentinel.weights import weight_files

    wrapper = source.wrapper
    weight_map: dict[str, str] = {}
    for file in weight_files(tmp):
        with safe_open(file, framework="pt") as f:
            tensors = {wrapper.wrapped_name(k): f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata()
        file.unlink()
        name = f"text-{file.name}"
        save_file(tensors, tmp / name, metadata=metadata or {"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    vision = _vision_tensors(source)
    save_file(vision, tmp / "vision.safetensors", metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(vision, "vision.safetensors"))
    (tmp / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))

    text = json.loads((tmp / "config.json").read_text())
    layout = text.pop("sentinel_layout", None)
    for key in ("architectures", "transformers_version"):
        text.pop(key, None)
    text["model_type"] = wrapper.text_model_type
    config = dict(source.raw, text_config=text, architectures=list(source.raw.get("architectures") or []))
    config.pop("sentinel_layout", None)
    if "tie_word_embeddings" in text:
        config["tie_word_embeddings"] = text["tie_word_embeddings"]
    if layout is not None:
        config["sentinel_layout"] = layout
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name in PROCESSOR_FILES:
        if (source.folder / name).is_file():
            shutil.copy2(source.folder / name, tmp / name)

