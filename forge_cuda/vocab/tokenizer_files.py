"""The transformers side of a trimmed vocabulary: ids that must stay, and the tokenizer folder.

Special and added tokens, the config's bos/eos/pad/unk ids and every token the chat
template writes always stay, so prompts render exactly as before. The trimmed
tokenizer is written with the library (tokenizer.json via ``Tokenizer.save``) and
tokenizer_config.json's ``added_tokens_decoder`` is renumbered to match.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from forge_cuda.vocab.bpe import byte_ids, check_byte_level_bpe, trim_tokenizer
from sentinel.errors import SentinelError

SPECIAL_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
SAMPLE_CHAT = [{"role": "system", "content": "x"}, {"role": "user", "content": "x"},
               {"role": "assistant", "content": "x"}, {"role": "user", "content": "x"}]


def backend(hf_tokenizer):
    """The `tokenizers.Tokenizer` inside a transformers fast tokenizer, or the SentencePiece error."""
    tok = getattr(hf_tokenizer, "backend_tokenizer", None)
    if tok is None:
        from forge_cuda.vocab.bpe import KEEP_HINT

        raise SentinelError(f"the tokenizer ({type(hf_tokenizer).__name__}) has no tokenizer.json (a SentencePiece "
                            f"model?); trimming the vocabulary needs byte-level BPE: {KEEP_HINT}")
    check_byte_level_bpe(tok)
    return tok


def config_special_ids(*configs) -> set[int]:
    """bos/eos/pad/unk ids named by config objects or dicts (ints or lists)."""
    out: set[int] = set()
    for cfg in configs:
        if cfg is None:
            continue
        for key in SPECIAL_KEYS:
            value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
            out.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None)
    return out


def template_ids(hf_tokenizer) -> set[int]:
    """Tokens of the chat template: its literal text pieces and a rendered sample conversation."""
    template = getattr(hf_tokenizer, "chat_template", None)
    if not isinstance(template, str):  # None, or a dict of named templates
        pieces = list(template.values()) if isinstance(template, dict) else []
    else:
        pieces = [template]
    ids: set[int] = set()
    texts: list[str] = []
    for source in pieces:
        import jinja2

        try:
            texts += [v for _, kind, v in jinja2.Environment().lex(source) if kind in ("data", "string")]
        except jinja2.TemplateSyntaxError as e:
            raise SentinelError(f"the tokenizer's chat template does not parse ({e.message})") from None
    for text in texts:
        ids.update(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
    if pieces:
        for messages in (SAMPLE_CHAT, SAMPLE_CHAT[1:]):
            try:
                rendered = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # a template may refuse one shape (roles, system prompts); its literals still count
                continue
            ids.update(hf_tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return ids


def required_ids(hf_tokenizer, *configs) -> set[int]:
    """Ids every trimmed vocabulary keeps: bytes, added/special tokens, config specials, chat template."""
    tok = backend(hf_tokenizer)
    return (byte_ids(tok) | set(tok.get_added_tokens_decoder()) | config_special_ids(*configs)
            | set(hf_tokenizer.all_special_ids) | template_ids(hf_tokenizer))


def _renumber_tokenizer_config(path: Path, new_id: dict[int, int]) -> None:
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    decoder = cfg.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        cfg["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_trimmed_tokenizer(hf_tokenizer, kept: Iterable[int], folder: Path) -> Path:
    """Write the tokenizer restricted to ``kept`` (sorted current ids) into ``folder``."""
    kept = np.asarray(kept, dtype=np.int64)
    trimmed = trim_tokenizer(backend(hf_tokenizer), kept)
    folder = Path(folder)
    hf_tokenizer.save_pretrained(folder)
    for stale in ("vocab.json", "merges.txt"):  # slow-tokenizer files would still hold the old ids
        (folder / stale).unlink(missing_ok=True)
    trimmed.save(str(folder / "tokenizer.json"))
    _renumber_tokenizer_config(folder / "tokenizer_config.json", {int(o): n for n, o in enumerate(kept)})
    return folder


def trim_hf_tokenizer(hf_tokenizer, kept: Iterable[int]):
    """A transformers tokenizer over ``kept`` only (written and read back, like a forged folder's)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="sentinel-vocab-") as tmp:
        save_trimmed_tokenizer(hf_tokenizer, kept, Path(tmp))
        return AutoTokenizer.from_pretrained(tmp)
