"""sentinel verify: measured numbers on a tiny converted model; "verified" only on the matching device."""

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_mlx import planner
from runtime_mlx.targets import GIB, get_targets, is_device
from runtime_mlx.verify import build_report, verify

ON_APPLE_SILICON = platform.system() == "Darwin" and platform.machine() == "arm64"


@pytest.fixture(scope="module")
def tiny_mlx(tmp_path_factory):
    """A forged tiny llama (irregular heads) with a real BPE tokenizer, converted to MLX fp32."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_model
    from tiny_tokenizer import tiny_tokenizer

    from convert import convert_to_mlx
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout
    from sentinel.layout import LayerHeads

    tmp = tmp_path_factory.mktemp("verify")
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), max_position_embeddings=512)
    defrag(model, model_layout(model).replace_layer(1, LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))))
    save_model(model, tmp / "hf", tokenizer=tok)
    return convert_to_mlx(tmp / "hf", tmp / "macbook-pro-16gb-fp32", dtype="float32")


def _measured(contexts=(64, 256)):
    return {"load_seconds": 1.0, "load_peak_bytes": 10 << 20,
            "contexts": [{"context": c, "prompt_tokens": c, "decode_tokens": 8, "peak_bytes": (20 << 20) + c,
                          "prompt_tps": 100.0, "decode_tps": 50.0, "kv_bytes_per_token": 512, "runs": []}
                         for c in contexts]}


def _facts(apple, ram_gb, system="Darwin", machine="arm64"):
    return {"chip": "Apple M4" if apple else "AMD EPYC", "ram_bytes": int(ram_gb * GIB), "os": "x",
            "system": system, "machine": machine, "apple_silicon": apple, "backend": "metal" if apple else "cpu",
            "mlx": "0", "mlx_lm": "0"}


def test_verified_requires_the_matching_device(tiny_mlx):
    facts = planner.model_facts(tiny_mlx)
    assert "macbook" in facts.name  # the name must not matter
    targets = get_targets("macbook-pro-16gb,macbook-pro-32gb,macbook-air-8gb")
    settings = {"contexts": [64, 256], "decode_tokens": 8, "repeats": 1}

    mac16 = build_report(facts, _measured(), _facts(True, 16), targets, settings)
    status = {t["target"]["name"]: t["status"] for t in mac16["targets"]}
    assert status == {"macbook-pro-16gb": "verified", "macbook-pro-32gb": "estimated",
                      "macbook-air-8gb": "estimated"}
    verified = mac16["targets"][0]["fits"]
    assert [f["peak_bytes"] for f in verified] == [(20 << 20) + 64, (20 << 20) + 256]  # measured, not predicted
    assert verified[0]["decode_tps"] == 50.0

    for facts_here in (_facts(False, 16, "Linux", "x86_64"),  # this CI machine's kind
                       _facts(False, 16, "Darwin", "x86_64"),  # an Intel Mac with 16 GB
                       _facts(True, 18),  # Apple Silicon, but 18 GB
                       {**_facts(True, 16), "backend": "cpu"}):  # the right Mac, but MLX on its CPU
        report = build_report(facts, _measured(), facts_here, targets, settings)
        assert {t["status"] for t in report["targets"]} == {"estimated"}
        est = report["targets"][0]["fits"][1]
        assert est["peak_bytes"] == planner.fit(facts, targets[0], 256 + 8)["predicted_peak_bytes"]
    assert is_device(targets[0], _facts(True, 16.2)) and not is_device(targets[0], _facts(True, 17))


def test_verify_tiny_model_writes_measured_report(tiny_mlx, tmp_path):
    report, path = verify(tiny_mlx, "macbook-air-8gb,macbook-pro-16gb,macbook-pro-32gb", [16, 48], 4, 2,
                          out=tmp_path / "out")
    assert path == tmp_path / "out" / "verify.json"
    on_disk = json.loads(path.read_text())
    assert on_disk["measured"]["contexts"][1]["context"] == 48
    md = (tmp_path / "out" / "verify.md").read_text()
    assert "| 48 |" in md and "estimated" in md
    m = report["measured"]
    for value in [m["load_seconds"], m["load_peak_bytes"]] + [r[k] for r in m["contexts"] for k in
                                                             ("peak_bytes", "prompt_tps", "decode_tps")]:
        assert math.isfinite(value) and value > 0
    facts = planner.model_facts(tiny_mlx)
    for row in m["contexts"]:
        assert row["peak_bytes"] >= facts.weight_bytes
        assert len(row["runs"]) == 2 and all(r["decode_tokens"] == 4 for r in row["runs"])
        assert row["kv_bytes_per_token"] == facts.kv_bytes_per_token  # read from mlx-lm's cache
    d = report["device"]
    assert d["ram_bytes"] > 0 and d["mlx"] and d["mlx_lm"] and d["chip"]
    if not ON_APPLE_SILICON:
        assert [t["status"] for t in report["targets"]] == ["estimated"] * 3
    assert len(report["planner_check"]) == 2


def test_verify_cli_errors_are_one_line(tiny_mlx, tmp_path):
    env = {**os.environ, "SENTINEL_HOME": str(tmp_path)}
    for args, msg, code in [((str(tmp_path / "missing"),), "not found", 1),
                            ((str(tiny_mlx), "--contexts", "0"), "0 is not in the range 1<=x<=", 2),  # click usage
                            ((str(tiny_mlx), "--target", "atari-st"), "unknown target 'atari-st'", 1)]:
        p = subprocess.run([sys.executable, "-m", "sentinel.cli", "verify", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == code
        assert p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0 and msg in p.stderr
    assert not (tiny_mlx / "verify.json").exists()


@pytest.mark.slow
def test_verify_real_model(real_mlx_fp32, tmp_path):
    """The converted SmolLM2-135M: measured numbers, MacBooks estimated here, planner within 10%."""
    p = subprocess.run([sys.executable, "-m", "sentinel.cli", "verify", str(real_mlx_fp32), "--contexts", "16,40",
                        "--decode-tokens", "4", "--repeats", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["model_facts"]["kv_bytes_per_token"] == 30 * 2 * 3 * 64 * 4
    for row in report["measured"]["contexts"]:
        assert row["kv_bytes_per_token"] == 30 * 2 * 3 * 64 * 4
        assert row["decode_tps"] > 0 and row["prompt_tps"] > 0
    for chk in report["planner_check"]:
        assert abs(chk["relative_error"]) <= 0.10
    if not ON_APPLE_SILICON:
        assert {t["status"] for t in report["targets"]} == {"estimated"}
