"""The trimmed tokenizer: only kept ids, exact round trips, old ids renumbered, one error for SentencePiece."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from forge_cuda.vocab import count_ids, parse_vocab_policy, save_trimmed_tokenizer, trim_hf_tokenizer
from forge_cuda.vocab.bpe import ancestry_closure, check_byte_level_bpe, merges_of
from forge_cuda.vocab.policy import seed_ids
from forge_cuda.vocab.tokenizer_files import required_ids
from sentinel.errors import SentinelError
from tiny_vocab import SPECIALS, VOCAB, chat_tokenizer, corpus

DOMAIN = corpus()[2]  # string.py: the "domain" whose ids are kept


def kept_for(text: str, policy: str = "domain") -> np.ndarray:
    hf = chat_tokenizer()
    counts = count_ids([hf(text, add_special_tokens=False)["input_ids"]], VOCAB)
    return ancestry_closure(hf.backend_tokenizer, seed_ids(counts, parse_vocab_policy(policy), required_ids(hf)))


@pytest.fixture(scope="module")
def trimmed():
    kept = kept_for(DOMAIN)
    return kept, trim_hf_tokenizer(chat_tokenizer(), kept)


def random_texts(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F),
             (0x0, 0x1F)]
    texts = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        texts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 60))))
    code = corpus()[0]  # os.py: code never counted
    for _ in range(n):
        start = rng.randrange(len(code) - 400)
        texts.append(code[start:start + rng.randint(10, 400)])
    return texts + ["", " ", "\n\n\t", "def f(x):\n    return x ** 2  # ünïcödé ✓ 🤖 日本語"]


def test_trim_removes_rows_and_keeps_bytes_and_specials(trimmed):
    kept, tok = trimmed
    hf = chat_tokenizer()
    assert 256 + len(SPECIALS) < len(kept) < VOCAB and len(tok) == len(kept)
    assert {hf.convert_tokens_to_ids(s) for s in SPECIALS} <= set(kept.tolist())
    for new, old in enumerate(kept.tolist()):
        assert tok.convert_ids_to_tokens(new) == hf.convert_ids_to_tokens(old)
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == \
           ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tok.eos_token_id == int(np.searchsorted(kept, hf.eos_token_id))


def test_any_text_encodes_to_kept_ids_and_decodes_exactly(trimmed):
    kept, tok = trimmed
    hf = chat_tokenizer()
    split = 0
    for text in random_texts():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert all(0 <= i < len(kept) for i in ids)
        assert tok.decode(ids) == text
        original = [int(kept[i]) for i in ids]  # the same text in the base model's ids
        assert hf.decode(original) == text
        split += len(ids) > len(hf(text, add_special_tokens=False)["input_ids"])
    assert split > 10  # removed tokens were really removed: their text now takes more pieces


def test_text_without_removed_tokens_gets_the_old_ids_renumbered(trimmed):
    kept, tok = trimmed
    hf = chat_tokenizer()
    position = {int(o): n for n, o in enumerate(kept)}
    lines = [line for line in DOMAIN.splitlines(keepends=True) if line.strip()]
    for text in [DOMAIN] + lines[:200]:
        old = hf(text, add_special_tokens=False)["input_ids"]
        assert set(old) <= set(position)
        assert tok(text, add_special_tokens=False)["input_ids"] == [position[i] for i in old]


def test_chat_template_renders_to_the_same_tokens(trimmed):
    kept, tok = trimmed
    hf = chat_tokenizer()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse a string."}]
    old = hf.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == old
    old_ids = hf(old, add_special_tokens=False)["input_ids"]
    assert [int(kept[i]) for i in tok(old, add_special_tokens=False)["input_ids"]] == old_ids
    assert set(hf("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]) <= set(kept.tolist())


def test_kept_set_is_closed_under_merge_ancestry(trimmed):
    kept, tok = trimmed
    hf = chat_tokenizer()
    vocab, names = hf.backend_tokenizer.get_vocab(), set(tok.get_vocab())
    merges = merges_of(check_byte_level_bpe(hf.backend_tokenizer))
    for a, b in merges:
        if a + b in names:
            assert a in names and b in names
    new_merges = merges_of(json.loads(tok.backend_tokenizer.to_str()))
    assert new_merges == [(a, b) for a, b in merges if {a, b, a + b} <= names]  # same ranks, in order
    assert len(new_merges) < len(merges) and len(vocab) == VOCAB


def test_saved_folder_holds_the_trimmed_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    hf = chat_tokenizer()
    kept = kept_for(DOMAIN)
    position = {int(o): n for n, o in enumerate(kept)}
    out = save_trimmed_tokenizer(hf, kept, tmp_path / "out")
    stored = json.loads((out / "tokenizer.json").read_text())
    assert len(stored["model"]["vocab"]) == len(kept)
    assert {t["content"]: t["id"] for t in stored["added_tokens"]} == \
           {s: position[hf.convert_tokens_to_ids(s)] for s in SPECIALS}
    decoder = json.loads((out / "tokenizer_config.json").read_text()).get("added_tokens_decoder")
    assert decoder is None or set(decoder) == {str(position[hf.convert_tokens_to_ids(s)]) for s in SPECIALS}
    back = AutoTokenizer.from_pretrained(out)
    assert len(back) == len(kept) and back.eos_token_id == position[hf.eos_token_id]
    assert back(DOMAIN[:500])["input_ids"] == [position[i] for i in hf(DOMAIN[:500])["input_ids"]]


def test_tokenizer_config_added_tokens_decoder_is_renumbered(tmp_path):
    from forge_cuda.vocab.tokenizer_files import _renumber_tokenizer_config

    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"added_tokens_decoder": {"5": {"content": "<a>"}, "9": {"content": "<b>"}},
                                "eos_token": "<b>"}))
    _renumber_tokenizer_config(path, {5: 1, 9: 3})
    assert json.loads(path.read_text()) == {"added_tokens_decoder": {"1": {"content": "<a>"},
                                                                     "3": {"content": "<b>"}}, "eos_token": "<b>"}


def test_coverage_policy_keeps_fewer_ids_than_domain():
    domain, most = kept_for(DOMAIN, "domain"), kept_for(DOMAIN, "0.9")
    assert len(most) < len(domain) and set(most.tolist()) <= set(domain.tolist())
    counts = np.array([0, 50, 30, 15, 5, 0])
    assert seed_ids(counts, parse_vocab_policy("0.8"), ()).tolist() == [1, 2]
    assert seed_ids(counts, parse_vocab_policy("0.81"), ()).tolist() == [1, 2, 3]
    assert seed_ids(counts, parse_vocab_policy("1"), [5]).tolist() == [1, 2, 3, 4, 5]
    assert seed_ids(counts, parse_vocab_policy("keep"), ()).tolist() == list(range(6))


@pytest.mark.parametrize("text", ["0", "1.5", "half", "-0.2", ""])
def test_bad_policy_is_one_error_line(text):
    with pytest.raises(SentinelError, match="use keep, domain, or a minimum coverage") as err:
        parse_vocab_policy(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["unigram", "wordpiece", "byte_fallback"])
def test_sentencepiece_like_tokenizers_get_one_error_naming_vocab_keep(kind):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    if kind == "unigram":
        model = models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0)
    elif kind == "wordpiece":
        model = models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")
    else:
        model = models.BPE({"<unk>": 0, "a": 1, "b": 2, "ab": 3}, [("a", "b")], byte_fallback=True, unk_token="<unk>")
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model))
    with pytest.raises(SentinelError, match="--vocab keep") as err:
        trim_hf_tokenizer(hf, np.arange(2))
    assert "\n" not in str(err.value)
    assert ("SentencePiece" in str(err.value)) == (kind != "wordpiece")


def test_sentencepiece_plan_fails_unless_the_vocabulary_is_kept():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from forge_cuda.vocab import plan_vocab
    from tiny_vocab import vocab_model

    pieces = [("<unk>", 0.0)] + [(chr(97 + i % 26) * (1 + i // 26), -1.0 - i) for i in range(VOCAB - 1)]
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.Unigram(pieces, unk_id=0)))
    model = vocab_model("llama")
    counts = np.ones(VOCAB, dtype=np.int64)
    with pytest.raises(SentinelError) as err:
        plan_vocab(model, hf, counts, parse_vocab_policy("domain"))
    assert str(err.value).count("\n") == 0 and "SentencePiece" in str(err.value) and "--vocab keep" in str(err.value)
    kept = plan_vocab(model, hf, counts, parse_vocab_policy("keep"))
    assert kept.removed_params == 0 and len(kept.kept) == VOCAB


def test_slow_tokenizer_without_tokenizer_json_names_vocab_keep():
    from forge_cuda.vocab.tokenizer_files import backend

    class SlowSentencePiece:  # what a tokenizer.model-only folder loads as: no backend_tokenizer
        pass

    with pytest.raises(SentinelError, match="SentencePiece model.*--vocab keep"):
        backend(SlowSentencePiece())
