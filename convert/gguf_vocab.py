"""The tokenizer inside the GGUF, so llama.cpp, Ollama and LM Studio need no other file.

Byte-level BPE tokenizers (tokenizer.json; SmolLM2, Qwen2, Llama 3, GPT-2
style) become ``tokenizer.ggml.model = gpt2``: the token strings in id order,
their types (special added tokens are CONTROL, so llama.cpp treats
``<|im_end|>`` as a control token), the merges, the special ids, add-BOS/EOS
flags and the chat template (the last three through ``gguf.SpecialVocab``).

llama.cpp does not run a tokenizer.json pre-tokenizer: it picks a built-in
regex set by the name in ``tokenizer.ggml.pre``. The stock converter finds that
name by hashing a test encoding; here the pre-tokenizer *definition* is
matched against the few shapes llama.cpp implements, and anything else is
refused by name instead of being tokenized differently without a word.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from sentinel.errors import SentinelError

LLAMA3_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def read_tokenizer(folder: Path) -> dict[str, Any]:
    """tokenizer.json as a dict, or one line saying what is missing or unsupported."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        what = "a SentencePiece tokenizer.model" if (folder / "tokenizer.model").is_file() else "no tokenizer.json"
        raise SentinelError(f"{folder} has {what}; the GGUF converter embeds byte-level BPE tokenizer.json only")
    try:
        tok = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SentinelError(f"{path} is not valid JSON ({e})") from None
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tok.get("decoder") or {}).get("type") != "ByteLevel":
        raise SentinelError(f"{path}: tokenizer model {model.get('type')!r} (byte_fallback="
                            f"{bool(model.get('byte_fallback'))}) is not byte-level BPE, the only kind the GGUF "
                            "converter embeds")
    return tok


def pre_tokenizer_name(tok: Mapping[str, Any]) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for this tokenizer.json, matched on its definition."""
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    norm = (tok.get("normalizer") or {}).get("type")
    if norm not in (None, "NFC"):
        raise SentinelError(f"tokenizer normalizer {norm!r} has no llama.cpp equivalent")
    if any(s.get("type") == "ByteLevel" and s.get("add_prefix_space") for s in steps):
        raise SentinelError("ByteLevel pre-tokenizer with add_prefix_space=true has no llama.cpp equivalent")
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # \p{N} then the GPT-2 regex
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex == LLAMA3_SPLIT:
            return "llama-bpe"
        if regex == QWEN2_SPLIT:
            return "qwen2"
    raise SentinelError(f"tokenizer pre-tokenizer {json.dumps(pre)[:160]} matches none of llama.cpp's built-in "
                        "ones this converter knows (gpt-2, smollm, llama-bpe, qwen2)")


def vocab_entries(tok: Mapping[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and types in id order, padded to the model's vocab_size as llama.cpp requires."""
    tokens: dict[int, str] = {int(i): t for t, i in tok["model"]["vocab"].items()}
    types = {i: TOKEN_NORMAL for i in tokens}
    for added in tok.get("added_tokens") or []:
        i = int(added["id"])
        tokens[i] = added["content"]
        types[i] = TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
    if tokens and max(tokens) >= vocab_size:
        raise SentinelError(f"tokenizer has token id {max(tokens)} but the model's vocab_size is {vocab_size}")
    names, kinds = [], []
    for i in range(vocab_size):
        names.append(tokens.get(i, f"[PAD{i}]"))
        kinds.append(types.get(i, TOKEN_UNUSED))
    return names, kinds


def add_tokenizer(writer, folder: Path, tok: Mapping[str, Any], vocab_size: int) -> dict[str, Any]:
    """Write the tokenizer keys; return what the Modelfile needs (template, stop strings)."""
    import gguf

    names, kinds = vocab_entries(tok, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tok))
    writer.add_token_list(names)
    writer.add_token_types(kinds)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise SentinelError(f"{folder / 'tokenizer.json'} has no BPE merges")
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(False)  # what the HF tokenizer does without a TemplateProcessing prefix
    template = special.chat_template if isinstance(special.chat_template, str) else None
    eos = special.special_token_ids.get("eos")
    return {"chat_template": template, "eos": names[eos] if eos is not None else None,
            "control": [n for n, k in zip(names, kinds) if k == TOKEN_CONTROL]}
