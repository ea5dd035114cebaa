"""The forge with a domain vocabulary (tiny byte-level BPE, tiny llama): the first cycle trims the rows
once, the forged track reads the same documents through its trimmed tokenizer, the teacher keeps the
same rows for the KL, the checkpoint carries a tokenizer that matches its embedding, and a run killed
after the trim resumes bit for bit."""

import json
import sysconfig
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from forge_cuda.forge import ForgeConfig, ForgeRun
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.recovery.blocklocal import BlockLocalConfig
from forge_cuda.train import TrainConfig
from forge_kill import killed_at, same_weights
from tiny_vocab import VOCAB, chat_tokenizer, vocab_model


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "src"
    vocab_model("llama").save_pretrained(folder)
    chat_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def domain(tmp_path):
    """A small code domain: 400-character pieces of six stdlib modules, one document per line."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((root / n).read_text() for n in ("textwrap.py", "string.py", "shlex.py", "glob.py", "fnmatch.py", "keyword.py"))
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps({"text": text[i:i + 400]}) + "\n" for i in range(0, len(text), 400)))
    return path


def config(source, domain, **overrides) -> ForgeConfig:
    base = dict(model=str(source), domain=str(domain), cycles=2, seq_len=32, train_tokens=3000, eval_tokens=512,
                calib_windows=4, budget="768", blocklocal_share=0.5, ood_eval_tokens=256, curve_points=1,
                curve_eval_tokens=128, blocklocal=BlockLocalConfig(lr=1e-3, cache_bytes=10**8),
                train=TrainConfig(steps=2, batch_size=4, lr=3e-3, warmup_steps=1, trainable="full"),
                prune=PruneOptions(criterion="taylor", target_params=0.8, vocab="domain"))
    base.update(overrides)
    return ForgeConfig(**base)


def test_the_forge_trims_the_vocabulary_once_and_ships_a_matching_tokenizer(source, domain, tmp_path):
    report = ForgeRun(config(source, domain), tmp_path / "out", progress=False).run()
    first, second = report["cycles"][1]["pruning"], report["cycles"][2]["pruning"]
    assert first["vocab"]["removed_rows"] > 0 and "vocab" not in second  # free rows go in the first cycle
    rows = {r["row"]: r for r in report["rows"]}
    kept = first["vocab"]["kept"]
    assert rows["forged"]["vocab_size"] == kept < rows["unpruned control"]["vocab_size"] == VOCAB
    assert all(0 < rows[r]["bpb"] < 20 for r in rows)
    model_dir = tmp_path / "out" / "model"
    config_json = json.loads((model_dir / "config.json").read_text())
    assert config_json["vocab_size"] == kept and config_json["sentinel_layout"]["base_vocab_size"] == VOCAB
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert len(tok) == kept
    text = "def wrap(text, width=70):\n    return [' é ünïcode ✓']\n"
    ids = tok(text)["input_ids"]
    assert max(ids) < kept and tok.decode(ids) == text


def test_a_run_killed_after_the_trim_resumes_bit_for_bit(source, domain, tmp_path, monkeypatch):
    straight = ForgeRun(config(source, domain), tmp_path / "straight", progress=False).run()
    with killed_at(monkeypatch, "forged c2"), pytest.raises(KeyboardInterrupt):
        ForgeRun(config(source, domain), tmp_path / "resumed", progress=False).run()
    resumed = ForgeRun(config(source, domain), tmp_path / "resumed", resume=True, progress=False).run()
    assert same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")
    assert [r["bpb"] for r in resumed["rows"]] == [r["bpb"] for r in straight["rows"]]


def test_free_rows_pace_no_cycle(source, domain, tmp_path):
    """Without --cycles, only heads and channels count toward the per-cycle step: the free rows go whole
    in cycle 1 on top of its share, and every cycle cuts heads or channels (none is a vocabulary-only cycle)."""
    from forge_cuda.pruning.step import default_cycles

    report = ForgeRun(config(source, domain, cycles=None, max_step_params=0.05), tmp_path / "out",
                      progress=False).run()
    base = report["baseline"]["params"]
    free = report["cycles"][1]["pruning"]["vocab"]["removed_params"] / base
    cycles = default_cycles(0.8, 0.05, free)
    assert report["schedule"] == {"cycles": cycles, "free": free} and free > 0 and cycles > 1
    for c in report["cycles"][1:]:
        k = c["cycle"]
        assert c["target_params"] == pytest.approx(1 - free - (1 - free - 0.8) * k / cycles)
        cut = c["pruning"]["mlp_channels"]["removed"] + c["pruning"]["query_heads"]["removed"]
        assert cut > 0
