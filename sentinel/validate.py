"""Validation at the edge: is this folder a model Sentinel can read? Checked once, before any work.

Every command that opens a model folder goes through ``check_model_folder``:
config.json is a JSON object whose geometry keys are positive integers, the
family is one the caller supports, the head layout is valid, and the weights
are present and sane safetensors (``sentinel.weights.read_header``: header
length bounded by the file, every tensor's bytes inside the file). A failure is
a ``SentinelError`` naming the file and the problem, which the CLI prints as
one ``error:`` line. Pure Python: no torch, no mlx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Optional

from sentinel.config import read_config, text_config as _text_config
from sentinel.errors import SentinelError

# (key, alternative key used by gpt2-style configs); required in every supported family.
REQUIRED_INTS = (("num_hidden_layers", "n_layer"), ("num_attention_heads", "n_head"), ("hidden_size", "n_embd"),
                 ("vocab_size", None))
OPTIONAL_INTS = ("num_key_value_heads", "head_dim", "intermediate_size", "n_inner", "max_position_embeddings",
                 "n_positions")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_INT = 2**31 - 1  # no real geometry is larger; GGUF stores these as uint32
POSITIVE_FLOATS = ("rope_theta", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "partial_rotary_factor")
BOOLS = ("attention_bias", "mlp_bias", "tie_word_embeddings", "use_sliding_window")
OBJECTS = ("rope_scaling", "rope_parameters")
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass(frozen=True)
class ModelFolder:
    """A folder that passed validation: its path, config and weight files (possibly none)."""

    path: Path
    config: dict
    weight_files: tuple[Path, ...]

    @property
    def context(self) -> Optional[int]:
        return model_context(self.config)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT


def _bound(value: Any) -> str:
    return f" of at most {MAX_INT:,}" if isinstance(value, int) and value > MAX_INT else ""


def _positive_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _token_ids(value: Any) -> bool:
    """A token id setting: null, a non-negative integer, or a list of them (several EOS ids)."""
    values = value if isinstance(value, list) else [value]
    return all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in values)


def check_config_values(cfg: Mapping[str, Any], where: str, name: str = "config.json") -> None:
    """Numbers are numbers, flags are booleans, RoPE blocks are objects (a string here crashed converters)."""
    for key in TOKEN_IDS:
        if not _token_ids(cfg.get(key)):
            raise SentinelError(f"{where}: {name} {key!r} must be a token id (a non-negative integer, a list of "
                                f"them, or null), got {cfg[key]!r}")
    for key in POSITIVE_FLOATS:
        if cfg.get(key) is not None and not _positive_float(cfg[key]):
            raise SentinelError(f"{where}: {name} {key!r} must be a positive number, got {cfg[key]!r}")
    for key in BOOLS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise SentinelError(f"{where}: config.json {key!r} must be true or false, got {cfg[key]!r}")
    for key in OBJECTS:
        block = cfg.get(key)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise SentinelError(f"{where}: config.json {key!r} must be an object or null, got {block!r}")
        kind = block.get("rope_type", block.get("type"))
        if kind is not None and not isinstance(kind, str):
            raise SentinelError(f"{where}: config.json {key}.rope_type must be a string, got {kind!r}")
        for inner in ("rope_theta", "factor"):
            if block.get(inner) is not None and not _positive_float(block[inner]):
                raise SentinelError(f"{where}: config.json {key}.{inner} must be a positive number, "
                                    f"got {block[inner]!r}")


def check_config(config: Mapping[str, Any], where: str, families: Optional[Collection[str]] = None) -> None:
    """Family supported (when ``families`` is given), geometry keys positive integers, layout valid."""
    for key in ("text_config", "sentinel_layout", "quantization", "quantization_config"):
        if config.get(key) is not None and not isinstance(config[key], Mapping):
            raise SentinelError(f"{where}: config.json {key!r} must be an object, got {config[key]!r:.60}")
    from sentinel.remote_code import base_model_type

    model_type = base_model_type(config.get("model_type"))  # a forged folder's sentinel_<family> is <family>
    if families is not None and model_type not in families:
        raise SentinelError(f"{where}: unsupported model family {model_type!r}; supported: "
                            f"{', '.join(sorted(families))}")
    cfg = _text_config(config)
    for key, alt in REQUIRED_INTS:
        name = key if key in cfg or alt is None or alt not in cfg else alt
        if name not in cfg:
            raise SentinelError(f"{where}: config.json lacks {key!r}")
        if not _positive_int(cfg[name]):
            raise SentinelError(f"{where}: config.json {name!r} must be a positive integer{_bound(cfg[name])}, "
                                f"got {cfg[name]!r}")
    for key in OPTIONAL_INTS:
        if cfg.get(key) is not None and not _positive_int(cfg[key]):
            raise SentinelError(f"{where}: config.json {key!r} must be a positive integer{_bound(cfg[key])}, "
                                f"got {cfg[key]!r}")
    check_config_values(cfg, where)
    heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    kv = cfg.get("num_key_value_heads") or heads
    if heads % kv:
        raise SentinelError(f"{where}: config.json has {heads} attention heads, not a multiple of {kv} KV heads")
    hidden = cfg.get("hidden_size", cfg.get("n_embd"))
    if cfg.get("head_dim") is None and hidden % heads:
        raise SentinelError(f"{where}: config.json hidden size {hidden} is not divisible by {heads} heads "
                            "(and no head_dim is given)")
    from sentinel.layout import read_layout

    read_layout(config)  # LayoutError (a SentinelError) names the broken rule


def model_context(config: Mapping[str, Any]) -> Optional[int]:
    """The longest sequence the model was built for (max_position_embeddings / n_positions), if stated."""
    cfg = _text_config(config)
    for key in ("max_position_embeddings", "n_positions"):
        if _positive_int(cfg.get(key)):
            return int(cfg[key])
    return None


def check_weights(folder: Path, required: bool = True) -> tuple[Path, ...]:
    """The folder's safetensors files, each checked; pickle-only folders are refused."""
    from sentinel.weights import read_header, weight_files

    folder = Path(folder)
    has_index = (folder / "model.safetensors.index.json").exists()
    if not has_index and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise SentinelError(f"{folder} holds only pickle weights ({pickles[0]}); Sentinel reads safetensors "
                                "(re-save the model with save_pretrained(safe_serialization=True))")
        if required:
            raise SentinelError(f"{folder} has no safetensors weights")
        return ()
    files = tuple(weight_files(folder))
    for file in files:
        read_header(file)
    return files


def check_model_folder(model: str | Path, families: Optional[Collection[str]] = None,
                       weights_required: bool = True) -> ModelFolder:
    """The single check every command runs on a model folder before using it."""
    folder = Path(model)
    if not folder.is_dir():
        raise SentinelError(f"model folder {folder} not found" if not folder.exists()
                            else f"{folder} is not a model folder")
    config = read_config(folder)
    check_config(config, str(folder), families)
    return ModelFolder(folder, config, check_weights(folder, weights_required))


TOKENIZER_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                        "generation_config.json", "chat_template.json")


def check_tokenizer_files(folder: Path) -> Optional[dict]:
    """tokenizer.json (when present) has the shape every reader assumes; the side files are JSON objects.

    Returns tokenizer.json's content (None when the folder has none). Checked: ``model`` an
    object, ``model.vocab`` an object of token -> non-negative integer id (a list for Unigram), ``model.merges`` a
    list, ``added_tokens`` a list of objects with an integer ``id`` and a string ``content``.
    """
    folder = Path(folder)
    side = {name: read_config(folder / name) for name in TOKENIZER_SIDE_FILES if (folder / name).is_file()}
    _check_side_values(folder, side)
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    tok = read_config(path)
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        _check_component(path, key, tok.get(key))
    added = tok.get("added_tokens") or []
    if not isinstance(added, list):
        raise SentinelError(f"{path}: added_tokens must be a list, got a {type(added).__name__}")
    for n, entry in enumerate(added):
        ok = isinstance(entry, Mapping) and isinstance(entry.get("content"), str)
        token_id = entry.get("id") if isinstance(entry, Mapping) else None
        if not ok or not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise SentinelError(f"{path}: added_tokens[{n}] needs an integer 'id' and a string 'content', "
                                f"got {json.dumps(entry)[:80]}")
    model = tok.get("model")
    if not isinstance(model, Mapping):
        raise SentinelError(f"{path}: 'model' must be an object, got {model!r:.60}")
    vocab = model.get("vocab")
    if model.get("type") == "Unigram":  # SentencePiece-style: a list of [piece, score]
        if not isinstance(vocab, list):
            raise SentinelError(f"{path}: a Unigram model.vocab must be a list of [token, score]")
        return tok
    if not isinstance(vocab, Mapping):
        got = "nothing" if vocab is None else f"a {type(vocab).__name__}"
        raise SentinelError(f"{path}: model.vocab must be an object of token -> id, got {got}")
    bad = next((t for t, i in vocab.items() if not isinstance(i, int) or isinstance(i, bool) or i < 0), None)
    if bad is not None:
        raise SentinelError(f"{path}: model.vocab id of {bad!r} must be a non-negative integer, got {vocab[bad]!r}")
    if model.get("merges") is not None and not isinstance(model["merges"], list):
        raise SentinelError(f"{path}: model.merges must be a list")
    return tok


SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _check_side_values(folder: Path, side: Mapping[str, dict]) -> None:
    """Values every tokenizer/generation reader takes at face value: token strings, ids, sampling numbers."""
    generation = side.get("generation_config.json", {})
    check_config_values(generation, str(folder), "generation_config.json")
    for key in SAMPLING:
        value = generation.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and value >= 0 and value < float("inf")):
            raise SentinelError(f"{folder}: generation_config.json {key!r} must be a number, got {value!r}")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = side.get(name, {})
        for key in SPECIAL_TOKENS:
            token = data.get(key)
            if isinstance(token, Mapping):
                token = token.get("content")
            if data.get(key) is not None and not isinstance(token, str):
                raise SentinelError(f"{folder}: {name} {key!r} must be a token string, got {data[key]!r:.60}")
        template = data.get("chat_template")
        if template is not None and not isinstance(template, (str, list)):
            raise SentinelError(f"{folder}: {name} 'chat_template' must be a string, got {template!r:.60}")


def _check_component(path: Path, key: str, block: Any) -> None:
    """A tokenizer.json pipeline step is null or an object; a Sequence's steps are objects too."""
    if block is None:
        return
    if not isinstance(block, Mapping):
        raise SentinelError(f"{path}: {key!r} must be an object or null, got {block!r:.60}")
    for inner in ("normalizers", "pretokenizers", "processors", "decoders"):
        steps = block.get(inner)
        if steps is not None and (not isinstance(steps, list) or not all(isinstance(x, Mapping) for x in steps)):
            raise SentinelError(f"{path}: {key}.{inner} must be a list of objects")
