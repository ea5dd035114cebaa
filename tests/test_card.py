"""sentinel card: README.md built only from the files present (config, forge report, verify reports)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_mlx import planner
from runtime_mlx.card import write_card
from runtime_mlx.targets import GIB, get_targets
from runtime_mlx.verify import build_report

ROWS = [{"row": "baseline", "ppl": 11.234, "loss": 2.4, "tokens": 4096, "params": 361088, "bytes_fp16": 722176,
         "kv_bytes_per_token_fp16": 768, "q_heads_total": 24, "kv_heads_total": 12},
        {"row": "LoRA-only control", "ppl": 9.876, "loss": 2.3, "tokens": 4096, "params": 361088,
         "bytes_fp16": 722176, "kv_bytes_per_token_fp16": 768, "q_heads_total": 24, "kv_heads_total": 12},
        {"row": "forged", "ppl": 10.5, "loss": 2.35, "tokens": 4096, "params": 340000, "bytes_fp16": 680000,
         "kv_bytes_per_token_fp16": 704, "q_heads_total": 20, "kv_heads_total": 11}]


@pytest.fixture(scope="module")
def forged_mlx(tmp_path_factory):
    """forge's layout: <out>/report.json beside <out>/model; the MLX folder converted into <out>/model-mlx."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_model

    from convert import convert_to_mlx
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout
    from sentinel.layout import LayerHeads

    out = tmp_path_factory.mktemp("forge-out")
    model = tiny_model("llama")
    defrag(model, model_layout(model).replace_layer(0, LayerHeads((0, 1, 4, 5), (0, 2))))
    save_model(model, out / "model")
    (out / "report.json").write_text(json.dumps({"source": "/models/tiny-base", "config": {
        "model": "tiny-base", "domain": "code", "prune_level": 0.2, "cycles": 1, "prune": {"criterion": "taylor"}},
        "data": {"eval": {"tokens": 4096, "documents": 7}}, "rows": ROWS}))
    return convert_to_mlx(out / "model", out / "model-mlx", dtype="float16")


def _verify_json(folder, apple):
    facts = {"chip": "Apple M4" if apple else "AMD EPYC", "ram_bytes": 16 * GIB, "os": "x", "apple_silicon": apple,
             "system": "Darwin" if apple else "Linux", "machine": "arm64" if apple else "x86_64",
             "backend": "metal" if apple else "cpu", "mlx": "0", "mlx_lm": "0"}
    measured = {"load_seconds": 1.0, "load_peak_bytes": 1, "contexts": [
        {"context": 512, "prompt_tokens": 512, "decode_tokens": 8, "peak_bytes": 3 << 20, "prompt_tps": 900.0,
         "decode_tps": 321.5, "kv_bytes_per_token": 704, "runs": []}]}
    return build_report(planner.model_facts(folder), measured, facts, get_targets("macbook-pro-16gb"),
                        {"contexts": [512], "decode_tokens": 8, "repeats": 1})


def test_card_without_reports_claims_nothing(forged_mlx, tmp_path):
    import shutil

    lone = tmp_path / "lone"
    shutil.copytree(forged_mlx, lone)
    for stale in lone.glob("verify*.json"):
        stale.unlink()
    text = write_card(lone).read_text()
    assert "Converted by `sentinel convert` from `model` (llama)" in text  # provenance kept from convert's card
    assert "| 0 | 4/8 | 2/4 |" in text and "| 1 | 8/8 | 4/4 |" in text  # heads kept per layer
    assert "no quality numbers are claimed" in text and "Not verified anywhere yet" in text
    for word in ("verified |", "estimated", "Verified: Yes", "baseline"):
        assert word not in text


def test_card_from_report_and_verify_files(forged_mlx):
    (forged_mlx / "verify.json").write_text(json.dumps(_verify_json(forged_mlx, apple=False)))
    (forged_mlx / "verify-m4.json").write_text(json.dumps(_verify_json(forged_mlx, apple=True)))
    first = write_card(forged_mlx).read_text()
    assert write_card(forged_mlx).read_text() == first  # regenerated, never appended to
    assert "Base model: `tiny-base` (forged from `/models/tiny-base`)" in first
    assert "| forged | 10.500 | 340,000 | 680,000 | 704 | 20 | 11 |" in first
    assert "| LoRA-only control | 9.876 |" in first and "| baseline | 11.234 |" in first
    rows = [line for line in first.splitlines() if line.startswith("| macbook-pro-16gb")]
    assert len(rows) == 2
    linux = next(r for r in rows if "verify.json" in r)
    mac = next(r for r in rows if "verify-m4.json" in r)
    assert "| estimated | AMD EPYC" in linux and "(bound)" in linux
    assert "| verified | Apple M4" in mac and "| 321.5 |" in mac and "| 3.0 MiB |" in mac
    assert "| float16 |" in mac
    here = [line for line in first.splitlines() if line.startswith("| the measuring machine itself")]
    assert len(here) == 2 and all("| measured |" in line and "| 321.50 |" in line for line in here)
    size = planner.model_facts(forged_mlx).weight_bytes
    assert f"{size:,} bytes" in first


def test_card_cli_errors(forged_mlx, tmp_path):
    env = {**os.environ, "SENTINEL_HOME": str(tmp_path)}
    for args, msg in [((str(forged_mlx), "--report", str(tmp_path / "none.json")), "not found"),
                      ((str(tmp_path / "nothing"),), "not found")]:
        p = subprocess.run([sys.executable, "-m", "sentinel.cli", "card", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 1 and p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0
        assert msg in p.stderr


def test_card_and_verify_modules_need_no_torch(forged_mlx):
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers', 'peft'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import runtime_mlx.verify, runtime_mlx.planner\n"
            "from runtime_mlx.card import write_card\n"
            f"print(write_card({str(forged_mlx)!r}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1500:]
    assert p.stdout.strip().endswith("README.md")


def test_verdict_is_computed_from_the_rows():
    from sentinel.verdict import verdict

    rows = [{"row": "baseline", "ppl": 20.0, "params": 100}, {"row": "unpruned control", "ppl": 10.0, "params": 100},
            {"row": "forged", "ppl": 12.0, "params": 75}]
    assert verdict(rows) == ("forged is 25% smaller and 20.0% worse in held-out perplexity than the unpruned "
                             "control (better than the untuned base model).")
    assert verdict(rows[:1]) == ""
