"""The forge with a recovery budget on a tiny model: phases sized as planned, bits per byte in every row,
curves for both tracks, and a run killed mid-cycle (after block-local, during KD) resumed bit for bit."""

import json

import pytest

from forge_cuda.forge import ForgeConfig, ForgeRun
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.recovery.blocklocal import BlockLocalConfig
from forge_cuda.train import TrainConfig
from sentinel.errors import SentinelError
from forge_kill import killed_at, same_weights
from tiny import tiny_model
from tiny_tokenizer import save_tiny_checkpoint, tiny_tokenizer


@pytest.fixture
def source(tmp_path):
    return save_tiny_checkpoint(tiny_model("llama", vocab_size=len(tiny_tokenizer())), tmp_path / "src")


def config(source, **overrides) -> ForgeConfig:
    base = dict(model=str(source), domain="code", prune_level=0.5, cycles=2, seq_len=32, train_tokens=4000,
                eval_tokens=512, calib_windows=4, budget="1536", blocklocal_share=0.5, ood_eval_tokens=256,
                curve_points=2, curve_eval_tokens=128,
                blocklocal=BlockLocalConfig(lr=1e-3, cache_bytes=10**8),
                train=TrainConfig(steps=2, batch_size=4, lr=3e-3, warmup_steps=1, trainable="full"),
                prune=PruneOptions(criterion="taylor"))
    base.update(overrides)
    return ForgeConfig(**base)


def test_budget_sizes_the_phases_and_the_report_has_bpb_curves_and_ood(source, tmp_path):
    report = ForgeRun(config(source), tmp_path / "out", progress=False).run()
    for c in report["cycles"][1:]:  # 768 tokens per cycle: 384 block-local (3 steps of 4 x 32), 384 KD (3 steps)
        assert c["plan"]["blocklocal_steps"] == 3 and c["plan"]["kd_steps"] == 3
        assert c["blocklocal"]["tokens"] == 384 and c["train"]["steps"] == 3
        assert c["control_train"]["steps"] == 6  # the same 768 tokens, on labels
        assert [p["phase"] for p in c["curve"]["forged"]][:2] == ["pruned", "blocklocal"]
    forged_curve = [p for c in report["cycles"][1:] for p in c["curve"]["forged"]]
    assert forged_curve[-1]["tokens"] == 1536 and all(p["bpb"] > 0 for p in forged_curve)
    rows = {r["row"]: r for r in report["rows"]}
    assert all(0 < rows[r]["bpb"] < 20 and rows[r]["predicted_bytes"] > rows[r]["tokens"] for r in rows)
    assert [r["row"] for r in report["ood_rows"]] == ["baseline", "forged"]
    assert report["ood_rows"][0]["domain"] == "docs"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "bits/byte" in md and "Out of domain" in md and " 1 cycles" not in md and "1 documents" not in md
    assert (tmp_path / "out" / "plots" / "recovery_curve.png").is_file()
    assert not (tmp_path / "out" / "teacher_states").exists()


def test_a_run_killed_during_kd_resumes_after_block_local_bit_for_bit(source, tmp_path, monkeypatch):
    straight = ForgeRun(config(source), tmp_path / "straight", progress=False).run()

    with killed_at(monkeypatch, "forged c2"), pytest.raises(KeyboardInterrupt):
        ForgeRun(config(source), tmp_path / "resumed", progress=False).run()
    state = json.loads((tmp_path / "resumed.partial" / "state.json").read_text())
    assert state["completed_cycle"] == 1 and state["partial"]["cycle"] == 2
    assert (tmp_path / "resumed.partial" / "cycle_2" / "blocklocal").is_dir()

    resumed = ForgeRun(config(source), tmp_path / "resumed", resume=True, progress=False).run()
    assert same_weights(tmp_path / "straight" / "model", tmp_path / "resumed" / "model")
    assert [r["bpb"] for r in resumed["rows"]] == [r["bpb"] for r in straight["rows"]]
    assert resumed["cycles"][2]["curve"] == straight["cycles"][2]["curve"]
    assert resumed["resumed"] == [{"after_cycle": 1, "mid_cycle": 2}]


def test_a_bad_budget_is_one_error_before_anything_runs(source):
    with pytest.raises(SentinelError, match="--budget 'soon'"):
        config(source, budget="soon")


def test_a_wall_time_budget_runs_each_phase_on_the_clock_and_the_control_matches_tokens(source, tmp_path):
    report = ForgeRun(config(source, budget="4s", cycles=1), tmp_path / "out", progress=False).run()
    cycle = report["cycles"][1]
    assert cycle["plan"]["kd_seconds"] == pytest.approx(2.0) and cycle["plan"]["blocklocal_seconds_per_block"] > 0
    assert cycle["train"]["steps"] >= 1 and cycle["train"]["seconds"] < 2.0 + 60  # stopped by the clock
    per_step = 4 * 32
    assert cycle["control_train"]["steps"] == cycle["train"]["steps"] + cycle["blocklocal"]["tokens"] // per_step


def test_the_cli_passes_the_recovery_split_and_the_kd_rate(source, tmp_path, monkeypatch):
    """--blocklocal-share and --distill-lr reach ForgeConfig; an out-of-range share is one error line."""
    from click.testing import CliRunner

    import forge_cuda.forge as forge_mod
    from sentinel.cli import main

    seen = {}

    class Capture:
        def __init__(self, cfg, out, **kw):
            seen["cfg"] = cfg

        def run(self):
            return {}

    monkeypatch.setattr(forge_mod, "ForgeRun", Capture)
    args = ["forge", str(source), "--out", str(tmp_path / "o"), "--budget", "2k"]
    result = CliRunner().invoke(main, args + ["--blocklocal-share", "0", "--distill-lr", "3e-4"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].blocklocal_share == 0.0 and seen["cfg"].distill_lr == 3e-4
    assert seen["cfg"].track_train("forged").lr == 3e-4
    bad = CliRunner().invoke(main, args + ["--blocklocal-share", "1.5"])
    assert bad.exit_code != 0 and "--blocklocal-share" in bad.output and not (tmp_path / "o").exists()
