"""Byte-level BPE restricted to a kept set of token ids, built with the `tokenizers` library.

A kept token stays reachable only if the tokens its merges start from stay too, so
the kept set is closed under merge ancestry; the 256 byte tokens always stay, so any
text still encodes (into smaller pieces where a removed token stood) and decodes back
byte for byte. The trimmed model is a fresh ``tokenizers.models.BPE`` over the kept
vocabulary and the merges among kept tokens, ids renumbered contiguously in original
order (new id i = the i-th kept original id), so a model's row i matches token i.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from sentinel.errors import SentinelError

KEEP_HINT = "use `--vocab keep` to keep the vocabulary as it is"


def _steps(component: dict | None) -> list[dict]:
    if not component:
        return []
    return list(component.get("pretokenizers") or component.get("decoders") or [component])


def check_byte_level_bpe(tok: Tokenizer) -> dict:
    """The tokenizer as a dict (the library's own JSON), or one error naming the keep option."""
    data = json.loads(tok.to_str())
    model = data.get("model") or {}
    kind = model.get("type")
    if kind in ("Unigram", "WordPiece", "WordLevel") or model.get("byte_fallback"):
        what = "a SentencePiece (Unigram)" if kind == "Unigram" else f"a {kind}"
        if model.get("byte_fallback"):
            what = "a SentencePiece-style (byte_fallback BPE)"
        raise SentinelError(f"the tokenizer is {what} tokenizer; trimming the vocabulary needs byte-level BPE "
                            f"(tokenizer.json, like GPT-2/Llama 3/Qwen2/SmolLM2): {KEEP_HINT}")
    byte_level = any(s.get("type") == "ByteLevel" for s in _steps(data.get("pre_tokenizer")))
    if kind != "BPE" or not byte_level:
        raise SentinelError(f"the tokenizer is {kind or 'unknown'} without a ByteLevel pre-tokenizer; trimming "
                            f"the vocabulary needs byte-level BPE: {KEEP_HINT}")
    return data


def merges_of(data: dict) -> list[tuple[str, str]]:
    """The BPE merges in rank order, whichever of the two JSON spellings the file uses."""
    out = []
    for m in data["model"].get("merges") or []:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        out.append((a, b))
    return out


def merge_result(a: str, b: str, prefix: str | None) -> str:
    """The token a merge produces (tokenizers strips the continuing-subword prefix of ``b``)."""
    return a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)


def byte_ids(tok: Tokenizer) -> set[int]:
    """Ids of the byte-level alphabet (the 256 single-byte tokens) present in the vocabulary."""
    vocab = tok.get_vocab(with_added_tokens=False)
    return {vocab[c] for c in pre_tokenizers.ByteLevel.alphabet() if c in vocab}


def ancestry_closure(tok: Tokenizer, keep: Iterable[int]) -> np.ndarray:
    """``keep`` plus every token any of their merges starts from, recursively; sorted int64."""
    data = check_byte_level_bpe(tok)
    vocab = tok.get_vocab(with_added_tokens=False)
    prefix = data["model"].get("continuing_subword_prefix")
    parents: dict[str, list[tuple[str, str]]] = {}
    for a, b in merges_of(data):
        parents.setdefault(merge_result(a, b, prefix), []).append((a, b))
    kept = {int(i) for i in keep}
    todo = [tok.id_to_token(i) for i in kept]
    while todo:
        for pair in parents.get(todo.pop(), ()):
            for parent in pair:
                pid = vocab.get(parent)
                if pid is not None and pid not in kept:
                    kept.add(pid)
                    todo.append(parent)
    return np.array(sorted(kept), dtype=np.int64)


def _new_model(data: dict, tok: Tokenizer, new_id: dict[int, int]) -> models.BPE:
    spec = data["model"]
    vocab = {t: new_id[i] for t, i in tok.get_vocab(with_added_tokens=False).items() if i in new_id}
    prefix = spec.get("continuing_subword_prefix")
    merges = [(a, b) for a, b in merges_of(data)
              if a in vocab and b in vocab and merge_result(a, b, prefix) in vocab]
    options = {key: spec[key] for key in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                          "fuse_unk", "byte_fallback", "ignore_merges") if spec.get(key) is not None}
    return models.BPE(vocab=vocab, merges=merges, **options)


def _renumber_ids(node, new_id: dict[int, int]):
    """Post-processor templates name special tokens by id; map those ids (and nothing else)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list) and all(isinstance(i, int) for i in value):
                out[key] = [new_id[i] for i in value]
            else:
                out[key] = _renumber_ids(value, new_id)
        return out
    return [_renumber_ids(v, new_id) for v in node] if isinstance(node, list) else node


def trim_tokenizer(tok: Tokenizer, kept: np.ndarray) -> Tokenizer:
    """A tokenizer over ``kept`` ids only (sorted, closed, byte tokens and added tokens included)."""
    data = check_byte_level_bpe(tok)
    kept = [int(i) for i in kept]
    new_id = {old: new for new, old in enumerate(kept)}
    added = tok.get_added_tokens_decoder()
    missing = [i for i in added if i not in new_id] + [i for i in byte_ids(tok) if i not in new_id]
    if missing:
        raise SentinelError(f"token {missing[0]} ({tok.id_to_token(missing[0])!r}) must be kept: added and byte "
                            "tokens always stay")
    out = Tokenizer(_new_model(data, tok, new_id))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        if getattr(tok, part) is not None:
            setattr(out, part, getattr(tok, part))
    for i in sorted(added):
        t = added[i]
        token = AddedToken(t.content, single_word=t.single_word, lstrip=t.lstrip, rstrip=t.rstrip,
                           normalized=t.normalized, special=t.special)
        (out.add_special_tokens if t.special else out.add_tokens)([token])
    tail = {k: data[k] for k in ("post_processor", "padding", "truncation") if data.get(k) is not None}
    if tail:  # these carry token ids: renumber them in the library's JSON and read it back
        merged = json.loads(out.to_str()) | _renumber_ids(tail, new_id)
        if "padding" in tail and tail["padding"].get("pad_id") in new_id:
            merged["padding"]["pad_id"] = new_id[tail["padding"]["pad_id"]]
        out = Tokenizer.from_str(json.dumps(merged))
    _check_ids(tok, out, kept)
    return out


def _check_ids(old: Tokenizer, new: Tokenizer, kept: list[int]) -> None:
    if new.get_vocab_size() != len(kept):
        raise SentinelError(f"trimmed tokenizer has {new.get_vocab_size()} tokens, expected {len(kept)} "
                            "(added tokens interleaved with the BPE vocabulary?)")
    for new_i, old_i in enumerate(kept):
        if new.id_to_token(new_i) != old.id_to_token(old_i):
            raise SentinelError(f"trimmed tokenizer puts {new.id_to_token(new_i)!r} at id {new_i}, expected "
                                f"{old.id_to_token(old_i)!r} (original id {old_i})")
