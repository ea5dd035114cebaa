"""The prepared GPU check: its CPU dry run writes a JSON the schema accepts; its pieces compute what they say.

The tests marked ``cuda`` are the CUDA path itself (autocast, grad scaler, bf16 teacher, checkpointing,
NF4, the CLI on --device cuda); they are skipped without a GPU and run by scripts/gpu_check.sh.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package
from bench import gpu_check_carry as carry  # noqa: E402
from bench.gpu_check_estimate import forge_seconds, tier_table  # noqa: E402
from bench.gpu_check_forge import MANIFEST, join_parts  # noqa: E402
from bench.gpu_check_schema import SCHEMA, validate  # noqa: E402
from bench.gpu_check_tables import measured_section, not_measured_section, replace_block  # noqa: E402
from forge_cuda.evaluate import perplexity  # noqa: E402
from forge_cuda.train import TrainConfig, train_model  # noqa: E402
from tiny import forge_tiny, tiny_model  # noqa: E402
from tiny_tokenizer import save_tiny_checkpoint, tiny_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, SENTINEL_GPU_STASH=str(out / "stash"))
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(out / "result"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "result" / "gpu_check.json").read_text())


@pytest.mark.slow
def test_dry_run_writes_one_valid_json_with_every_section(dry_run):
    assert validate(dry_run, SCHEMA) == [] and dry_run["schema_errors"] == []
    assert dry_run["mode"] == "dry-run" and dry_run["complete"] and dry_run["wall_s"] < dry_run["budget_s"]
    tests = dry_run["sections"]["tests"]
    assert tests["status"] == "ok" and tests["counts"]["skipped"] >= 1 and tests["counts"]["failed"] == 0
    runs = {(r["shape"], r["mode"]): r for r in dry_run["sections"]["stages"]["runs"]}
    assert set(runs) == {(s, "full") for s in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen3.5-4b")} | {
        ("smollm2-135m", "lora"), ("smollm2-135m", "nf4")}
    for (shape, mode), run in runs.items():
        if mode == "nf4":  # no CUDA here: skipped with the reason, never silently
            assert run["status"] == "skipped" and "CUDA" in run["reason"]
            continue
        assert run["status"] == "ok", (shape, mode, run)
        st = run["stages"]
        assert all(s["status"] == "ok" for name, s in st.items() if name != "save")
        assert st["save"]["status"] == ("ok" if mode == "full" else "skipped") and st["save"].get("reason") != ""
        assert st["stage0"]["precision"] == "fp32" and st["stage0"]["trainable"] == ("full" if mode == "full" else "lora")
        assert st["prune"]["params_after"] < st["prune"]["params_before"]
        assert st["distill"]["tokens"] == 2 * 2 * 31 and st["distill"]["tokens_per_s"] > 0
        assert st["distill"]["losses_finite"] and st["eval"]["tokens"] == 2 * 31
        est = dry_run["estimates"][shape][mode]["default_forge"]
        assert est["seconds"] == pytest.approx(sum(est["parts"].values())) and est["seconds"] > 0
    forge = dry_run["sections"]["forge"]
    assert forge["status"] == "ok" and forge["weights"] == "random"
    assert forge["real_weights"]["carried"] is False and forge["real_weights"]["reason"].startswith("not carried")
    assert [r["row"] for r in forge["report"]["rows"]][0] == "baseline"


def test_validator_names_each_violation():
    doc = {"schema": "other", "mode": "gpu", "complete": "yes"}
    errors = validate(doc, SCHEMA)
    assert "$: missing 'sections'" in errors
    assert any(e.startswith("$.schema: 'other' is not one of") for e in errors)
    assert "$.complete: expected boolean, got str" in errors
    assert validate(1.5, {"type": "integer"}) == ["$: expected integer, got float"]
    assert validate(True, {"type": "number"}) == ["$: expected number, got bool"]


def run_row(tps: dict, prune_s=2.0, save_s=1.0, params=100, full=None, peaks=None) -> dict:
    stages = {s: {"status": "ok", "tokens_per_s": v, "seconds": 1.0, "peak_bytes": (peaks or {}).get(s)}
              for s, v in tps.items()}
    stages["prune"] = {"status": "ok", "seconds": prune_s, "windows": 4, "peak_bytes": (peaks or {}).get("prune")}
    stages["save"] = {"status": "ok", "seconds": save_s, "peak_bytes": (peaks or {}).get("save")}
    return {"shape": "smollm2-135m", "mode": "full", "status": "ok", "params": params, "full_params": full or params,
            "stages": stages}


DEFAULTS = {"steps": 10, "batch_size": 2, "grad_accum": 1, "seq_len": 11, "eval_tokens": 500, "calib_windows": 8,
            "target_params": 0.75, "cycles": 3, "control": True}


def test_default_forge_estimate_adds_its_parts():
    # 200 train tokens per stage; eval 500 tokens x (2 + 3*3) rows; prune 2 s per 4 windows -> 4 s per cycle
    est = forge_seconds(run_row({"eval": 1000, "stage0": 100, "distill": 50, "control": 100}), DEFAULTS)
    assert est["parts"] == {"stage0": 2.0, "distill": 12.0, "control": 6.0, "prune": 12.0, "eval": 5.5, "save": 7.0}
    assert est["seconds"] == pytest.approx(44.5) and not est["scaled_by_params"]
    scaled = forge_seconds(run_row({"eval": 1000, "stage0": 100, "distill": 50, "control": 100}, full=400), DEFAULTS)
    assert scaled["seconds"] == pytest.approx(4 * 44.5) and scaled["scaled_by_params"]
    # out-of-domain rows 100 x (2 + 3) + curves 50 x (1 + 1 points) x 2 tracks x 3 cycles = 1,100 more eval tokens
    extras = dict(DEFAULTS, ood_domain="docs", ood_eval_tokens=100, curve_points=1, curve_eval_tokens=50)
    est = forge_seconds(run_row({"eval": 1000, "stage0": 100, "distill": 50, "control": 100}), extras)
    assert est["parts"]["eval"] == pytest.approx(5.5 + 1.1) and est["eval_tokens"] == 500 * 11 + 1100


def test_tier_table_takes_the_best_mode_that_fits():
    runs = []
    for mode, peak in (("full", 30 * GiB), ("lora", 20 * GiB), ("nf4", 10 * GiB)):
        row = run_row({"eval": 1, "stage0": 1, "distill": 1, "control": 1}, params=4_000_000_000,
                      peaks={s: peak for s in ("eval", "stage0", "prune", "distill", "control", "save")})
        runs.append(dict(row, mode=mode))
    by_gpu = {r["gpu_gib"]: r["models"]["smollm2-135m"] for r in tier_table(runs)["by_gpu"]}
    assert by_gpu[8]["best_measured"] is None and by_gpu[12]["best_measured"] == "nf4"
    assert by_gpu[24]["fits"] == ["lora", "nf4"] and by_gpu[48]["best_measured"] == "full"
    assert by_gpu[8]["forge_rule"] == "nf4" and by_gpu[48]["forge_rule"] == "full"


def test_carried_parts_join_only_when_every_checksum_holds(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(os.urandom(3 * 5 * 2**20 + 123))
    monkeypatch.setattr(carry, "CAPACITY", 6 * 2**20)
    folders = carry.pack([], gguf)
    manifest = carry.manifest_for(folders, gguf)
    assert len(manifest["parts"]) >= 3 and sum(p["size"] for p in manifest["parts"]) == gguf.stat().st_size
    dirs = []
    for i, files in enumerate(folders):
        d = tmp_path / f"carry{i}"
        d.mkdir()
        for name, data in files:
            (d / name).write_bytes(data)
        (d / MANIFEST).write_text(json.dumps(manifest))
        dirs.append(str(d))
    joined, info = join_parts(Path(dirs[0]) / MANIFEST, dirs, tmp_path / "joined.gguf")
    assert info["carried"] and info["sha256_ok"] and joined.read_bytes() == gguf.read_bytes()
    joined, info = join_parts(Path(dirs[0]) / MANIFEST, dirs[:-1], tmp_path / "joined2.gguf")
    assert joined is None and info["reason"].startswith("not carried: part")
    last = Path(dirs[-1]) / manifest["parts"][-1]["name"]
    last.write_bytes(b"x" + last.read_bytes()[1:])
    joined, info = join_parts(Path(dirs[0]) / MANIFEST, dirs, tmp_path / "joined3.gguf")
    assert joined is None and "damaged" in info["reason"]


def test_slim_bitsandbytes_keeps_cuda13_and_cpu_libraries_only(tmp_path):
    libs = ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda128.so", "libbitsandbytes_cuda130.so",
            "libbitsandbytes_rocm72.so"]
    wheel = tmp_path / "raw" / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        for lib in libs:
            z.writestr(f"bitsandbytes/{lib}", b"\0" * 100)
        z.writestr("bitsandbytes/__init__.py", "")
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "".join(f"bitsandbytes/{n},sha256=x,100\n" for n in libs))
    (tmp_path / "slim").mkdir()
    with zipfile.ZipFile(carry.slim_bitsandbytes(wheel, tmp_path / "slim")) as z:
        names = set(z.namelist())
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
    assert {n.rsplit("/", 1)[-1] for n in names if n.endswith(".so")} == {libs[0], libs[2]}
    assert "cuda128" not in record and "cuda130" in record and "bitsandbytes/__init__.py" in names


def test_docs_say_not_measured_until_a_gpu_json_exists(tmp_path):
    text = "a\n<!-- gpu_check:start -->\nold\n<!-- gpu_check:end -->\nb\n"
    out = replace_block(text, "gpu_check", not_measured_section())
    assert out.startswith("a\n<!-- gpu_check:start -->\n*not measured*") and out.endswith("<!-- gpu_check:end -->\nb\n")
    assert "old" not in out
    doc = {"started_at": "2026-12-01T00:00:00", "budget_s": 300, "wall_s": 250,
           "env": {"python": "3.12", "versions": {"torch": "2.11"}, "device_name": "NVIDIA H200",
                   "gpu_memory_bytes": 141 * GiB, "cuda_version": "13.0", "git_commit": "abc"},
           "forge_defaults": DEFAULTS, "estimates": {"smollm2-135m": {"full": {
               "distill_tokens_per_s_full_depth": 5000.0, "default_forge": {"seconds": 600.0, "scaled_by_params": False}}}},
           "tiers": None, "sections": {"tests": {"status": "ok", "counts": {"passed": 3}, "cases": []},
                                       "stages": {"runs": []}, "forge": {"status": "skipped"}}}
    text = "\n".join(measured_section(doc))
    assert "NVIDIA H200 (141.0 GiB)" in text and "| smollm2-135m | full | 5,000 | 10.0 |" in text


# ---- the CUDA path (skipped without a GPU; scripts/gpu_check.sh runs these with pytest -m cuda) -------------

@pytest.fixture
def fresh_accelerate():
    """accelerate keeps one process-wide state: a second precision in one process would be refused."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def repetitive_windows(n=16, length=24):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 50, (n, 1), generator=g) + torch.arange(length)) % 96


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("precision,trainable", [("bf16", "lora"), ("fp16", "lora"), ("bf16", "full")])
def test_autocast_training_on_cuda_lowers_the_loss(precision, trainable, fresh_accelerate):
    model = tiny_model("llama").cuda()
    windows = repetitive_windows()
    before = perplexity(model, windows, progress=False)["loss"]
    cfg = TrainConfig(steps=25, batch_size=4, lr=5e-3 if trainable == "lora" else 1e-3, warmup_steps=2,
                      lora_rank=8, lora_dropout=0.0, precision=precision, trainable=trainable)
    merged, stats = train_model(model, windows, cfg, progress=False, device=torch.device("cuda"))
    after = perplexity(merged, windows, progress=False)["loss"]
    assert stats["precision"] == precision and after < before - 0.5, (before, after)
    assert next(merged.parameters()).dtype == torch.float32 and next(merged.parameters()).is_cuda


@pytest.mark.cuda
@CUDA
def test_distillation_from_a_bf16_teacher_on_cuda(fresh_accelerate):
    teacher = tiny_model("llama").cuda().to(torch.bfloat16).eval()
    student = forge_tiny(tiny_model("llama")).cuda()
    cfg = TrainConfig(steps=20, batch_size=4, lr=3e-3, warmup_steps=2, trainable="full")
    _, stats = train_model(student, repetitive_windows(), cfg, progress=False, device=torch.device("cuda"),
                           teacher=teacher)
    assert stats["loss"] == "distill" and stats["precision"] == "bf16"
    assert torch.isfinite(torch.tensor(stats["last_loss"])) and stats["last_loss"] < stats["first_loss"]


@pytest.mark.cuda
@CUDA
def test_gradient_checkpointing_on_cuda_gives_the_same_weights(fresh_accelerate):
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, lora_rank=4, lora_dropout=0.0, precision="fp32")
    plain, _ = train_model(tiny_model("llama").cuda(), repetitive_windows(), cfg, progress=False)
    cfg.gradient_checkpointing = True
    ckpt, _ = train_model(tiny_model("llama").cuda(), repetitive_windows(), cfg, progress=False)
    for (n, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(p, q, atol=1e-4), n


def nf4_ready() -> bool:
    from forge_cuda.nf4 import bitsandbytes_available

    return bitsandbytes_available()[0]


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("tier", ["auto", "nf4"])
def test_cli_forge_on_cuda(tier, tmp_path):
    if tier == "nf4" and not nf4_ready():
        pytest.skip("bitsandbytes is not usable here (carry its wheel: docs/GPU.md)")
    src = save_tiny_checkpoint(tiny_model("llama", vocab_size=len(tiny_tokenizer())), tmp_path / "src")
    cmd = [sys.executable, "-m", "sentinel.cli", "forge", str(src), "--out", str(tmp_path / "out"), "--steps", "3",
           "--batch-size", "2", "--seq-len", "32", "--train-tokens", "4000", "--eval-tokens", "512",
           "--calib-windows", "4", "--cycles", "1", "--prune-level", "0.5", "--device", "cuda", "--tier", tier]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["tier"]["name"] == ("nf4" if tier == "nf4" else "full")
    assert all(c["train"]["precision"] == "bf16" for c in report["cycles"])
    assert all(r["ppl"] == r["ppl"] and r["ppl"] < 1e6 for r in report["rows"])  # finite, not NaN
