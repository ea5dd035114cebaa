"""Load and save checkpoints with irregular per-layer heads in plain transformers classes.

transformers cannot build a Llama whose layers differ in head count from the
config alone, so the loader builds the model on the meta device, resizes each
layer's attention to the layout in config.json, then streams the safetensors
shards in. Saving goes through ``save_pretrained`` (safetensors, sharded, with
index) into a temp folder renamed into place when complete.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors import SafetensorError
from torch import nn

from forge_cuda import hf_export, modeling_sentinel, wrappers
from forge_cuda.pruning.defrag import model_layout
from forge_cuda.families import family_for
from sentinel.atomic import atomic_dir
from sentinel.config import family_config, read_config as raw_config, text_config
from sentinel.errors import LayoutError, SentinelError
from sentinel.layout import HeadLayout, read_layout
from sentinel.remote_code import is_forged_config
from sentinel.weights import weight_files


def read_config(path: Path) -> dict:
    """A folder's config.json; a forged folder reads as its family (sentinel.config.family_config)."""
    return family_config(path)


def build_empty(config, layout: HeadLayout, dtype: torch.dtype, attn_implementation: str | None = None) -> nn.Module:
    """A model on the meta device whose attention already has the layout's head counts."""
    from transformers import AutoModelForCausalLM

    family = family_for(config.model_type)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)
    prunable, with_mlp = set(family.attention_layers(model)), set(family.mlp_layers(model))
    full = HeadLayout.full(layout.base).layers
    for i, layer in enumerate(layout.layers):
        if i not in prunable and (layer.q_heads, layer.kv_heads) != (full[i].q_heads, full[i].kv_heads):
            raise LayoutError(f"layer {i} has no prunable attention heads, but the layout prunes it")
        if layer.mlp_channels is not None and i not in with_mlp:
            raise LayoutError(f"layer {i} has no prunable MLP, but the layout prunes its channels")
    # the same resize the folder's own modelling file runs under trust_remote_code (one implementation)
    modeling_sentinel.apply_layout(model, [(l.num_heads, l.num_kv_heads, len(l.mlp_channels)
                                            if l.mlp_channels is not None else None) for l in layout.layers])
    return model


def init_runtime_buffers(model: nn.Module, device: str | torch.device = "cpu") -> None:
    """Recompute non-persistent buffers (e.g. rotary inv_freq) that checkpoints never hold.

    Works on a model built on the meta device too: those buffers are materialised first.
    """
    for module in model.modules():
        if getattr(module, "_non_persistent_buffers_set", None):
            module.to_empty(device=device, recurse=False)
            model._init_weights(module)


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               attn_implementation: str | None = None) -> nn.Module:
    """Load a plain or forged checkpoint folder into its ordinary transformers class."""
    from transformers import AutoConfig, GenerationConfig

    path = Path(path)
    source_raw = read_config(path)
    wrapper = wrappers.detect(source_raw)  # multimodal folder: load the text model inside it
    raw = wrapper.text_config(source_raw) if wrapper else source_raw
    layout = read_layout(raw)
    family_for(raw.get("model_type", "?"))
    forged = is_forged_config(raw_config(path))  # model_type stock cannot resolve
    config = AutoConfig.for_model(**raw) if wrapper or forged else AutoConfig.from_pretrained(path)
    model = build_empty(config, layout, dtype, attn_implementation)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    model.to_empty(device=device)
    loaded: set[str] = set()
    for file in weight_files(path):
        try:
            with safe_open(file, framework="pt", device=str(device)) as f:
                shard = {}
                for stored in f.keys():
                    key = wrapper.text_name(stored) if wrapper else stored
                    if key is None:  # a wrapper's vision tower or MTP layers
                        continue
                    if key not in expected:
                        raise SentinelError(f"{file.name}: unexpected tensor {stored} for {config.model_type}")
                    t = f.get_tensor(stored)
                    if tuple(t.shape) != expected[key]:
                        raise LayoutError(f"tensor {key} has shape {tuple(t.shape)}, "
                                          f"the layout in config.json expects {expected[key]}")
                    shard[key] = t
        except SafetensorError as e:
            raise SentinelError(f"{file} is not a readable safetensors file ({e})") from None
        model.load_state_dict(shard, strict=False)
        loaded.update(shard)
    missing = sorted(set(expected) - loaded - tied)
    if missing:
        raise SentinelError(f"{path}: checkpoint lacks tensor {missing[0]} ({len(missing)} missing)")
    model.tie_weights()
    init_runtime_buffers(model, device)
    if (path / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(path)
    if wrapper:
        wrappers.remember(model, wrapper, path, source_raw)
    return model.eval()


def load_tokenizer(path: str | Path):
    """The folder's tokenizer; a vocabulary-trimmed folder (layout v3) must carry the trimmed one."""
    from transformers import AutoTokenizer

    # the tokenizer is a standard one: never run (or ask about) the folder's modelling code for it
    tokenizer = AutoTokenizer.from_pretrained(Path(path), trust_remote_code=False)
    raw = read_config(Path(path))
    cfg = text_config(raw)
    if (raw.get("sentinel_layout") or cfg.get("sentinel_layout") or {}).get("vocab_ids") is not None \
            and len(tokenizer) != cfg.get("vocab_size"):
        raise SentinelError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the vocabulary-trimmed model "
                            f"has {cfg.get('vocab_size')} rows (was the trimmed tokenizer saved with it?)")
    return tokenizer


def check_shapes(model: nn.Module, layout: HeadLayout) -> None:
    """Refuse to save a model whose matrices disagree with its recorded layout."""
    family = family_for(model.config.model_type)
    for i in family.attention_layers(model):
        heads = family.head_weights(family.attention(model, i))["o"].shape[0]
        if heads != layout.layers[i].num_heads:
            raise LayoutError(f"layer {i}: o_proj has {heads} heads, layout says {layout.layers[i].num_heads}")
    for i, width in family.mlp_widths(model).items():
        if width != layout.mlp_widths[i]:
            raise LayoutError(f"layer {i}: the MLP has {width} channels, layout says {layout.mlp_widths[i]}")


@contextlib.contextmanager
def _quiet_progress():
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def save_model(model: nn.Module, out: str | Path, tokenizer=None, force: bool = False,
               max_shard_size: str = "2GB", extra: Callable[[Path], None] | None = None) -> Path:
    """Write config (with layout), sharded safetensors + index, generation config, tokenizer.

    ``extra(tmp)`` may add files (reports, scores) before the folder is renamed into place.
    """
    layout = model_layout(model).validate()
    check_shapes(model, layout)
    with atomic_dir(out, force=force) as tmp:
        with _quiet_progress():  # a "Writing model shards" bar per save is noise in the forge's console
            model.save_pretrained(tmp, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        wrappers.finish_save(model, tmp)  # back into the multimodal shape when its vision tower is kept
        hf_export.install_model_file(tmp)  # modelling file + auto_map: transformers loads it with trust_remote_code
        if extra is not None:
            extra(tmp)
    return Path(out)


def param_count(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
