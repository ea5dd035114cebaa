"""Stock mlx-lm tools open a converted forged folder through its model_file shim (--trust-remote-code)."""

import json
import subprocess
import sys

import pytest

from test_runtime import chat_folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from convert import convert_to_mlx
    from runtime_mlx.stock import install_model_file

    root = tmp_path_factory.mktemp("stock")
    out = convert_to_mlx(chat_folder(root / "forged"), root / "mlx", dtype="float32")
    install_model_file(out)
    return out


def run_stock(*args):
    return subprocess.run([sys.executable, "-m", "mlx_lm", *args], capture_output=True, text=True, timeout=120)


def test_install_model_file_copies_our_model(prepared):
    cfg = json.loads((prepared / "config.json").read_text())
    assert cfg["model_file"] == "sentinel_model.py"
    assert "sentinel_layout" in cfg  # the layout block survives
    from runtime_mlx.models import decoder

    # a copy of our own model module (mlx + mlx-lm only), not a shim onto an installed runtime
    assert (prepared / "sentinel_model.py").read_text() == open(decoder.__file__).read()
    assert "runtime_mlx" not in (prepared / "sentinel_model.py").read_text().replace("runtime_mlx/models", "")


def test_stock_generate_matches_ours(prepared):
    import runtime_mlx
    from mlx_lm import generate

    proc = run_stock("generate", "--model", str(prepared), "--trust-remote-code", "--prompt", "hello world",
                     "--max-tokens", "6", "--temp", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    model, tokenizer = runtime_mlx.load(prepared)  # ignores model_file: our classes directly
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello world"}], add_generation_prompt=True)
    ours = generate(model, tokenizer, prompt, max_tokens=6)
    assert proc.stdout.split("==========")[1].strip() == ours.strip()


def test_stock_benchmark_runs(prepared):
    proc = run_stock("benchmark", "--model", str(prepared), "--trust-remote-code", "-p", "16", "-g", "4", "-n", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generation_tps" in proc.stdout + proc.stderr or "Averages" in proc.stdout + proc.stderr
