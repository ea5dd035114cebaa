"""Domain data: split by document (disjoint, stable), packed windows without padding."""

import json

import pytest
import torch

from forge_cuda.data import assign_split, build_splits, documents, split_documents
from forge_cuda.evaluate import perplexity
from sentinel.errors import SentinelError
from tiny import tiny_model


class CharTokenizer:
    """Deterministic stand-in tokenizer: one id per byte, EOS = 0 (no model download needed)."""

    eos_token_id = 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[1 + (b % 95) for b in t.encode()] for t in texts]}


def write_jsonl(path, n):
    path.write_text("\n".join(json.dumps({"text": f"document number {i} " * (5 + i % 7)}) for i in range(n)))
    return path


def test_builtin_domains_are_real_corpora():
    code = documents("code")
    assert len(code) > 500 and any(d.doc_id == "os.py" for d in code)
    assert "def " in next(d for d in code if d.doc_id == "os.py").text
    docs = documents("docs")
    assert len(docs) > 50 and all(d.text.strip() for d in docs)


def test_splits_are_disjoint_by_document_and_stable():
    docs = documents("code")
    a, b = split_documents(docs), split_documents(list(reversed(docs)))
    ids = {name: {d.doc_id for d in a[name]} for name in a}
    assert not ids["train"] & ids["eval"] and not ids["train"] & ids["calibration"]
    assert not ids["eval"] & ids["calibration"]
    assert sum(map(len, ids.values())) == len(docs)
    assert {n: [d.doc_id for d in a[n]] for n in a} == {n: [d.doc_id for d in b[n]] for n in b}
    assert 0.05 < len(ids["eval"]) / len(docs) < 0.15
    # A document's split depends on its id alone, not on which other documents exist.
    assert all(assign_split(d) == "eval" for d in ids["eval"])


def test_packing_has_no_padding_and_respects_caps(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", 200)
    splits = build_splits(str(data), CharTokenizer(), seq_len=32, max_tokens={"train": 1000, "eval": 320})
    assert splits.train.shape == (31, 32) and splits.eval.shape == (10, 32)
    assert splits.stats["eval"]["tokens"] == 320
    for t in (splits.train, splits.calibration, splits.eval):
        assert t.dtype == torch.long and t.min() >= 0  # no -100 / pad markers anywhere
    again = build_splits(str(data), CharTokenizer(), seq_len=32, max_tokens={"train": 1000, "eval": 320})
    assert torch.equal(again.eval, splits.eval) and torch.equal(again.train, splits.train)


def test_eval_windows_come_only_from_eval_documents(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": chr(65 + i % 26) * 50}) for i in range(60)))
    splits = build_splits(str(data), CharTokenizer(), seq_len=10)
    eval_ids = {d.doc_id for d in split_documents(documents(str(data)))["eval"]}
    eval_chars = {1 + (ord(documents(str(data))[int(i.split(":")[1]) - 1].text[0]) % 95) for i in eval_ids}
    assert set(splits.eval.unique().tolist()) - {0} <= eval_chars


@pytest.mark.parametrize("content, message", [
    ("not json\n", "d.jsonl:1 is not valid JSON"),
    (json.dumps({"title": "x"}) + "\n", "has no string 'text' or 'content' field"),
    (json.dumps({"text": "only one"}) + "\n", "has 1 documents; at least 3 are needed"),
])
def test_bad_user_data_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(SentinelError, match=message):
        documents(str(tmp_path / "d.jsonl"))


def test_unknown_source_is_a_clear_error():
    with pytest.raises(SentinelError, match="data source 'nope' not found"):
        documents("nope")


def test_perplexity_counts_every_target_token_once():
    model = tiny_model("llama")
    windows = torch.randint(0, 96, (5, 12), generator=torch.Generator().manual_seed(0))
    whole = perplexity(model, windows, batch_size=5, progress=False)
    batched = perplexity(model, windows, batch_size=2, progress=False)
    assert whole["tokens"] == batched["tokens"] == 5 * 11
    assert abs(whole["loss"] - batched["loss"]) < 1e-5
    # The same number computed independently through transformers' own loss.
    with torch.no_grad():
        hf = model(input_ids=windows, labels=windows).loss.item()
    assert abs(whole["loss"] - hf) < 1e-5
