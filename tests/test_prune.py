"""One-shot pruning: the report tells the truth about the model it produced."""

import json

import pytest
import torch
from click.testing import CliRunner

from forge_cuda.checkpoint import load_model, load_tokenizer, param_count
from forge_cuda.pruning.defrag import model_layout
from forge_cuda.pruning.command import report_markdown
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.space import kv_bytes_per_token
from forge_cuda.pruning.step import prune_model
from sentinel.cli import main
from sentinel.errors import SentinelError
from sentinel.weights import header_param_count
from tiny import tiny_model, tokens


@pytest.mark.parametrize("family,mode", [("llama", "group"), ("qwen3", "auto"), ("gpt2", "auto")])
def test_report_matches_the_pruned_model(family, mode):
    model = tiny_model(family)
    before = param_count(model)
    report, scores = prune_model(model, [tokens(2, 16)], PruneOptions("activation", 0.5, mode, refit=False), progress=False)
    layout = model_layout(model)
    assert report["params"] == {"before": before, "after": param_count(model)}
    assert report["params"]["after"] < before
    q = report["query_heads"]
    assert q["removed"] == q["total"] - sum(layout.q_counts) == (6 if family == "gpt2" else 12)
    kv_after = sum(layout.kv_counts) * 2 * layout.base.head_dim
    assert report["kv_bytes_per_token"]["fp16"]["after"] == kv_after * 2 == kv_bytes_per_token(model, layout, 2)
    assert report["kv_bytes_per_token"]["checkpoint_dtype"] == {
        "dtype": "float32", "before": sum(model_layout(tiny_model(family)).kv_counts) * 2 * layout.base.head_dim * 4,
        "after": kv_after * 4}
    if mode == "group":
        assert report["kv_bytes_per_token"]["fp16"]["after"] < report["kv_bytes_per_token"]["fp16"]["before"]
    assert [r["q_after"] for r in report["layers"]] == layout.q_counts
    assert report["calibration_tokens"] == 32 and set(scores) == {"heads"} and scores["heads"].criterion == "activation"
    assert "| parameters |" in report_markdown(report)


def test_bad_options_fail_before_any_work(tmp_path):
    with pytest.raises(SentinelError, match=r"level must be a fraction in \[0, 1\), got 1.5"):
        PruneOptions(level=1.5)
    runner = CliRunner()
    result = runner.invoke(main, ["prune", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                                  "--prune-level", "2"])
    assert result.exit_code != 0 and result.output.strip().startswith("error: ") and "--prune-level" in result.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "exists").mkdir()
    result = runner.invoke(main, ["prune", "smollm2-135m", "--out", str(tmp_path / "exists")])
    assert result.exit_code == 1 and "already exists (use --force to replace it)" in result.output


@pytest.mark.slow
def test_prune_the_real_model_then_load_and_generate(real_model, tmp_path):
    """--target-params 0.75 on SmolLM2-135M: heads and MLP channels go, within one channel group of the goal."""
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(real_model), "--target-params", "0.75", "--criterion", "taylor",
                                       "--calib-windows", "2", "--seq-len", "64", "--batch-size", "2",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prune_report.json").read_text())
    assert report["query_heads"]["total"] == 270 and report["mlp_channels"]["total"] == 30 * 1536
    goal = round(0.75 * 134_515_008)
    assert goal - 64 * 3 * 576 < report["params"]["after"] <= goal  # within one group of 64 channels
    assert report["mlp_channels"]["removed"] % 64 == 0 and report["mlp_channels"]["removed"] > 0
    assert report["calibration_tokens"] == 128
    model = load_model(out)
    assert param_count(model) == report["params"]["after"] == header_param_count(out) < report["params"]["before"]
    assert sum(model_layout(model).q_counts) == 270 - report["query_heads"]["removed"]
    assert all(w % 64 == 0 for w in model_layout(model).mlp_widths)
    for name in ("scores_taylor.npy", "channel_scores_taylor.npy"):
        assert (out / "importance" / name).exists()
    assert (out / "prune_report.md").exists()
    tok = load_tokenizer(out)
    ids = tok("def fibonacci(n):", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(gen[0, ids.shape[1]:])
    assert gen.shape[1] == ids.shape[1] + 8 and text.strip()
