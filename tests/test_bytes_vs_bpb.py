"""bench/bytes_vs_bpb.py on tiny models: MLX fp16 bits per byte = the forge's torch evaluator, bytes shrink
with the bits, the Pareto flags follow their definition, a rerun resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package
from bench import bytes_vs_bpb  # noqa: E402

SEQ_LEN = 32


def _domain(tmp_path: Path) -> Path:
    from tiny_vocab import corpus

    lines = [text[i:i + 600] for text in corpus() for i in range(0, len(text), 600)]
    path = tmp_path / "domain.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines if t.strip()))
    return path


def _torch_bpb(folder: Path, tokenizer, documents) -> float:
    """The forge's evaluator on the same documents, through the tokenizer the checkpoint was saved with."""
    from forge_cuda.checkpoint import load_model
    from forge_cuda.data import eval_windows
    from forge_cuda.evaluate import perplexity, token_byte_lengths

    windows, _ = eval_windows(documents, tokenizer, SEQ_LEN)
    model = load_model(folder).half().float()  # the fp16 folder's rounded weights, computed in fp32
    return perplexity(model, windows, batch_size=4, progress=False, token_bytes=token_byte_lengths(tokenizer))["bpb"]


def test_bytes_vs_bpb_tiny(tmp_path, capsys):
    from forge_cuda.checkpoint import save_model
    from forge_cuda.data import build_splits
    from test_vocab_convert import trimmed_checkpoint
    from tiny_vocab import chat_tokenizer, vocab_model

    base = save_model(vocab_model("llama"), tmp_path / "base", tokenizer=chat_tokenizer())
    _, trimmed_tok, forged = trimmed_checkpoint(tmp_path, "llama", heads=True)
    assert len(trimmed_tok) < len(chat_tokenizer())  # the forged folder reads the text with its own tokenizer
    domain = _domain(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"domain": str(domain), "settings": {
        "seq_len": SEQ_LEN, "train_tokens": 4096, "eval_tokens": 4096, "calib_windows": 2}}))
    out = tmp_path / "bytes_vs_bpb.json"
    argv = ["--base", str(base), "--forged", f"forged={forged}", "--settings", str(settings),
            "--eval-tokens", "1024", "--out", str(out)]
    result = bytes_vs_bpb.main(argv)

    s = result["settings"]
    documents = bytes_vs_bpb.eval_documents(s, chat_tokenizer())
    splits = build_splits(str(domain), chat_tokenizer(), SEQ_LEN, seed=0, max_tokens={
        "train": 4096, "calibration": 2 * SEQ_LEN, "eval": 1024})
    assert documents == splits.eval_documents  # the forge's held-out documents
    rows = {(r["label"], r["format"]): r for r in result["rows"]}
    assert len(rows) == 8 and json.loads(out.read_text())["rows"] == result["rows"]
    for label, folder, tokenizer in (("base", base, chat_tokenizer()), ("forged", forged, trimmed_tok)):
        fp16 = rows[label, "fp16"]
        assert abs(fp16["bpb"] / _torch_bpb(folder, tokenizer, documents) - 1) < 1e-3
        assert rows[label, "q4"]["weight_bytes"] < rows[label, "q6"]["weight_bytes"] < \
            rows[label, "q8"]["weight_bytes"] < fp16["weight_bytes"]
    assert rows["forged", "fp16"]["vocab_size"] == len(trimmed_tok) < rows["base", "fp16"]["vocab_size"]
    assert abs(result["torch_fp32_base"]["bpb"] / rows["base", "fp16"]["bpb"] - 1) < 1e-2
    for r in result["rows"]:
        dominated = any(o["weight_bytes"] <= r["weight_bytes"] and o["bpb"] <= r["bpb"] and
                        (o["weight_bytes"], o["bpb"]) != (r["weight_bytes"], r["bpb"]) for o in result["rows"])
        assert r["pareto"] is not dominated
    assert any(r["pareto"] for r in result["rows"])
    assert min(result["rows"], key=lambda r: r["weight_bytes"])["pareto"]

    capsys.readouterr()
    again = bytes_vs_bpb.main(argv)  # resumes: every row is read back, none is measured again
    assert again["rows"] == result["rows"] and capsys.readouterr().out.count("already in the out JSON") == 8
