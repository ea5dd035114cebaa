"""`sentinel forge` on tiny models: honest rows, resumable cycles, the budget controller, clear errors."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import forge_cuda.forge as forge_mod
from forge_cuda.checkpoint import load_model
from forge_cuda.data import build_splits
from forge_cuda.evaluate import perplexity
from forge_cuda.forge import ForgeConfig, ForgeRun
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.train import TrainConfig
from sentinel.cli import main
from sentinel.errors import SentinelError
from tiny import tiny_model
from tiny_tokenizer import save_tiny_checkpoint, tiny_tokenizer


@pytest.fixture
def source(tmp_path):
    return save_tiny_checkpoint(tiny_model("llama", vocab_size=len(tiny_tokenizer())), tmp_path / "src")


def config(source, **overrides) -> ForgeConfig:
    base = dict(model=str(source), domain="code", prune_level=0.5, cycles=2, seq_len=32, train_tokens=6000,
                eval_tokens=1024, calib_windows=8,
                train=TrainConfig(steps=4, batch_size=4, lr=3e-3, warmup_steps=1, lora_dropout=0.0),
                prune=PruneOptions(criterion="taylor", mode="auto"))
    base.update(overrides)
    return ForgeConfig(**base)


def weights(folder):
    return load_file(str(next(folder.glob("*.safetensors"))))


def test_forge_writes_three_rows_that_an_independent_evaluation_reproduces(source, tmp_path):
    out = tmp_path / "out"
    report = ForgeRun(config(source), out, progress=False).run()
    assert [r["row"] for r in report["rows"]] == ["baseline", "unpruned control", "forged"]
    baseline, control, forged = report["rows"]
    assert forged["params"] < control["params"] == baseline["params"]
    assert forged["q_heads_total"] == 12 and control["q_heads_total"] == 24
    assert forged["kv_bytes_per_token_fp16"] < control["kv_bytes_per_token_fp16"]
    for f in ("report.json", "report.md", "status.json", "plots/quality_per_cycle.png", "plots/kept_heads.png",
              "plots/importance_cycle_1.png", "plots/params_per_cycle.png", "model/config.json"):
        assert (out / f).is_file(), f
    assert not (tmp_path / "out.partial").exists()
    assert json.loads((out / "status.json").read_text())["phase"] == "done"
    assert report["data"]["eval"]["tokens"] == 1024 and forged["tokens"] == 32 * 31  # targets: T-1 per window

    # Recompute the forged perplexity from the saved folder with the contract loader and fresh splits.
    model = load_model(out / "model")
    assert model.config.sentinel_layout["layers"] == report["cycles"][-1]["forged"]["layout"]["layers"]
    splits = build_splits("code", tiny_tokenizer(), 32, max_tokens={"train": 6000, "eval": 1024,
                                                                     "calibration": 256})
    again = perplexity(model, splits.eval, progress=False)["ppl"]
    assert abs(again - forged["ppl"]) / forged["ppl"] < 0.005
    md = (out / "report.md").read_text()
    assert f"{forged['ppl']:.3f}" in md and "unpruned control" in md


def test_resume_after_a_kill_gives_the_same_checkpoint(source, tmp_path, monkeypatch):
    straight = ForgeRun(config(source), tmp_path / "straight", progress=False).run()

    real_prune = forge_mod.prune_once

    def killed_in_cycle_2(model, calibration, level, settings, seed=0, **kw):
        if seed == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_prune(model, calibration, level, settings, seed=seed, **kw)

    monkeypatch.setattr(forge_mod, "prune_once", killed_in_cycle_2)
    with pytest.raises(KeyboardInterrupt):
        ForgeRun(config(source), tmp_path / "resumed", progress=False).run()
    partial = tmp_path / "resumed.partial"
    assert json.loads((partial / "state.json").read_text())["completed_cycle"] == 1
    with pytest.raises(SentinelError, match="add --resume"):
        ForgeRun(config(source), tmp_path / "resumed", progress=False)

    monkeypatch.setattr(forge_mod, "prune_once", real_prune)
    resumed = ForgeRun(config(source), tmp_path / "resumed", resume=True, progress=False).run()
    a, b = weights(tmp_path / "straight" / "model"), weights(tmp_path / "resumed" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["ppl"] for r in resumed["rows"]] == [r["ppl"] for r in straight["rows"]]


def test_budget_controller_keeps_the_last_cycle_within_budget(source, tmp_path):
    # Removing 90% of the heads is a real quality drop that the eval data reveals: with a 0% budget
    # the run must stop at the first cycle whose forged PPL exceeds the control's, and ship the
    # last cycle that stayed within it.
    strict = ForgeRun(config(source, prune_level=0.9, cycles=3, max_ppl_increase=0.0), tmp_path / "strict",
                      progress=False).run()
    assert strict["stopped_by_budget"]
    cycles, accepted = strict["cycles"], strict["accepted_cycle"]
    failed = cycles[-1]
    assert failed["within_budget"] is False and failed["forged"]["ppl"] > failed["control"]["ppl"]
    assert all(c["within_budget"] for c in cycles[1:-1]) and accepted == len(cycles) - 2
    assert strict["rows"][-1]["params"] == cycles[accepted]["forged"]["params"]
    assert weights(tmp_path / "strict" / "model")["model.layers.0.self_attn.q_proj.weight"].shape[0] == \
        16 * cycles[accepted]["forged"]["q_heads"][0]
    assert "Stopped by the quality budget" in (tmp_path / "strict" / "report.md").read_text()
    loose = ForgeRun(config(source, prune_level=0.9, max_ppl_increase=100.0), tmp_path / "loose",
                     progress=False).run()
    assert not loose["stopped_by_budget"] and loose["accepted_cycle"] == 2
    assert loose["rows"][-1]["q_heads_total"] < 24


@pytest.mark.parametrize("args, message", [
    (["--tier", "nf4"], "the nf4 tier needs a CUDA GPU"),
    (["--max-ppl-increase", "lots"], "'lots' is not a fraction"),
    (["--prune-level", "1.5"], "--prune-level"),
    (["--target-params", "0.8", "--prune-level", "0.3"], "not both"),
    (["--target-bytes", "lots"], "is not a size"),
    (["--domain", "nowhere"], "data source 'nowhere' not found"),
    (["--resume"], "nothing to resume"),
    (["--device", "bogus"], "is not a device"),
    (["--eval-tokens", "0"], "--eval-tokens"),
    (["--grad-accum", "0"], "--grad-accum"),
])
def test_cli_rejects_bad_input_in_one_line(source, tmp_path, args, message):
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(main, ["forge", str(source), "--out", str(out), "--steps", "1", "--seq-len", "32",
                                       "--eval-tokens", "256", "--train-tokens", "1000", *args])
    assert result.exit_code != 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ")
    assert message in result.output
    assert not out.exists()


def test_cli_refuses_to_overwrite_an_existing_output(source, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    result = CliRunner().invoke(main, ["forge", str(source), "--out", str(out)])
    assert result.exit_code == 1 and "already exists (use --force" in result.output


def test_size_target_prunes_channels_and_heads_gradually_with_distillation(source, tmp_path):
    """--target-params 0.75: three cycles of <= 10% each, full-parameter distillation, control trained the same way."""
    cfg = config(source, prune_level=0.0, cycles=None, recovery="distill",
                 prune=PruneOptions(criterion="activation", target_params=0.75),
                 train=TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_steps=1, trainable="full"))
    report = ForgeRun(cfg, tmp_path / "out", progress=False).run()
    assert report["config"]["cycles"] is None and report["schedule"] == {"cycles": 3, "free": 0.0}
    baseline, control, forged = report["rows"]
    base = baseline["params"]
    group = 12 * 192  # channel group of the tiny model (96 // 8) x parameters per channel
    for c in report["cycles"][1:]:
        goal = round(c["target_params"] * base)
        assert goal - group < c["forged"]["params"] <= goal
        assert c["train"]["loss"] == "distill" and c["train"]["trainable"] == "full"
    assert forged["mlp_channels_total"] < control["mlp_channels_total"] == 288
    assert control["params"] == base
    assert (tmp_path / "out" / "plots" / "shape_per_layer.png").is_file()
    assert "MLP channels" in (tmp_path / "out" / "report.md").read_text()
    assert "**Verdict:** forged is 2" in (tmp_path / "out" / "report.md").read_text()  # 2x% smaller
    assert "cycle_0" not in {p.name for p in (tmp_path / "out").iterdir()}


def test_bad_input_leaves_nothing_and_reports_strict_json(source, tmp_path):
    """A model that fails validation creates no .partial; a finished report.json has no bare NaN."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama", "num_attention_heads": "nine"}')
    result = CliRunner().invoke(main, ["forge", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and result.output.strip().splitlines()[-1].startswith("error: ")
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())
    under_file = tmp_path / "file.txt"
    under_file.write_text("x")
    result = CliRunner().invoke(main, ["forge", str(source), "--out", str(under_file / "out")])
    assert result.exit_code != 0 and "is a file" in result.output

    out = tmp_path / "strict-json"
    ForgeRun(config(source, cycles=1), out, progress=False).run()

    def refuse(name):
        raise ValueError(f"bare {name} in report.json")

    report = json.loads((out / "report.json").read_text(), parse_constant=refuse)
    assert report["rows"][0]["row"] == "baseline"


def test_prune_refuses_to_replace_its_own_input(source):
    result = CliRunner().invoke(main, ["prune", str(source), "--out", str(source), "--force",
                                       "--target-params", "0.9", "--calib-windows", "1", "--seq-len", "16"])
    assert result.exit_code != 0 and "would overwrite the input" in result.output
    assert (source / "config.json").is_file()


@pytest.mark.parametrize("after_stage0", [False, True], ids=["during-stage0", "after-stage0"])
def test_sigterm_leaves_nothing_or_a_resumable_failed_run(source, tmp_path, after_stage0):
    """SIGTERM before stage 0 completes removes .partial; later it keeps it, with status.json saying failed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "term"
    work = tmp_path / "term.partial"
    cmd = [sys.executable, "-m", "sentinel.cli", "forge", str(source), "--out", str(out), "--seq-len", "32",
           "--train-tokens", "6000", "--eval-tokens", "256", "--calib-windows", "4", "--steps", "400",
           "--batch-size", "2", "--target-params", "0.9", "--train", "lora"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.time() + 240
    want = "cycle" if after_stage0 else "step"
    while time.time() < deadline:
        status = work / "status.json"
        if after_stage0 and (work / "state.json").exists() or not after_stage0 and status.exists() and \
                json.loads(status.read_text() or "{}").get("phase") == "train":
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"forge never reached the {want} phase")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "error: terminated (SIGTERM)" in err.splitlines()[-1] or "\nerror: terminated" in err
    assert not out.exists()
    if after_stage0:
        assert json.loads((work / "status.json").read_text())["phase"] == "failed"
    else:
        assert not work.exists()


def test_distill_lr_sets_only_the_forged_tracks_kd_rate():
    """distill_lr changes the KD rate alone: stage 0 and the control keep theirs (given or the recipe's)."""
    from forge_cuda.recovery.recipe import default_lr

    cfg = ForgeConfig(model="m", distill_lr=2e-4, train=TrainConfig(trainable="full"))
    assert cfg.track_train("forged").lr == 2e-4
    assert cfg.track_train("control").lr == cfg.track_train("stage0").lr == default_lr("full", "labels")
    given = ForgeConfig(model="m", distill_lr=2e-4, train=TrainConfig(trainable="full", lr=3e-5))
    assert given.track_train("forged").lr == 2e-4 and given.track_train("control").lr == 3e-5
    assert ForgeConfig(model="m", train=TrainConfig(trainable="full")).track_train("forged").lr == \
        default_lr("full", "distill")
