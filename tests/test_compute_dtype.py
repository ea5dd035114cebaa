"""On MLX's CPU backend an fp16 folder computes in float32 by default (--keep-dtype keeps fp16); on a GPU
backend nothing changes. generate -v, chat /stats and verify.json say which dtype ran."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from sentinel.cli import main
from test_runtime import chat_folder
from tiny import tokens


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    from convert import convert_to_mlx

    root = tmp_path_factory.mktemp("dtype")
    return convert_to_mlx(chat_folder(root / "hf"), root / "mlx-f16", dtype="float16")


def logits(model, x):
    import mlx.core as mx

    return np.array(model(mx.array(x.numpy())).astype(mx.float32))


def test_fp16_folder_computes_in_float32_on_cpu(fp16):
    import runtime_mlx
    from runtime_mlx.loader import compute_dtype, on_cpu

    assert on_cpu()  # CI and this machine: MLX's CPU backend
    upcast = runtime_mlx.load_model(fp16)
    stored = runtime_mlx.load_model(fp16, keep_dtype=True)
    assert (compute_dtype(upcast), compute_dtype(stored)) == ("float32", "float16")
    x = tokens(vocab=64)
    # same weights, two arithmetics: fp32 compute of fp16 weights differs from fp16 compute by rounding only
    assert np.abs(logits(upcast, x) - logits(stored, x)).max() < 0.05


def test_gpu_backend_keeps_the_stored_dtype(fp16, monkeypatch):
    import runtime_mlx
    from runtime_mlx import loader

    monkeypatch.setattr(loader, "on_cpu", lambda: False)
    assert loader.compute_dtype(runtime_mlx.load_model(fp16)) == "float16"


def test_cli_reports_the_compute_dtype(fp16, tmp_path):
    for extra, dtype in (([], "float32"), (["--keep-dtype"], "float16")):
        result = CliRunner().invoke(main, ["generate", str(fp16), "-p", "hello", "--max-tokens", "2", "-v", *extra])
        assert result.exit_code == 0, result.stderr
        assert result.stderr.strip().endswith(f"compute: {dtype}")
        result = CliRunner().invoke(main, ["chat", str(fp16), "--max-tokens", "2", *extra], input="hi\n/stats\n")
        assert result.stdout.strip().splitlines()[-1].endswith(f"compute: {dtype}")
    result = CliRunner().invoke(main, ["verify", str(fp16), "--contexts", "8", "--decode-tokens", "2", "--repeats", "1",
                                       "--target", "macbook-air-8gb", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["settings"]["compute_dtype"] == "float32" and report["format"] == "float16"
    assert "computed in float32" in (tmp_path / "verify.md").read_text()
    assert "computed in float32 on cpu" in result.stdout
