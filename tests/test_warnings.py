"""CPU runs of prune, forge, convert (MLX, GGUF), card and serve print no third-party warning lines (issue 20).

bitsandbytes used to log "Failed to load CPU gemm_4bit_forward ... No module named 'kernels'" on
every import through peft; tqdm progress bars are fine. Cards, report.md and the Modelfile name no path of this machine.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tiny import tiny_model
from tiny_tokenizer import save_tiny_checkpoint, tiny_tokenizer

WARNING = re.compile(r"warn|Failed to load|deprecat", re.I)


def noise(stderr: str) -> list[str]:
    """Lines that look like warnings, progress bars removed."""
    lines = re.split(r"[\r\n]+", stderr)
    return [line for line in lines if WARNING.search(line) and "%|" not in line]


def run(*args, timeout=240):
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # the warnings a user sees (Python's default filters)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert noise(proc.stderr) == [], noise(proc.stderr)
    return proc


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return save_tiny_checkpoint(tiny_model("llama", vocab_size=len(tiny_tokenizer())),
                                tmp_path_factory.mktemp("warn") / "src")


def test_prune_prints_no_warnings(source, tmp_path):
    run("prune", source, "--out", tmp_path / "pruned", "--target-params", "0.9", "--seq-len", "32",
        "--calib-windows", "4")


def test_forge_convert_card_and_serve_print_no_warnings(source, tmp_path):
    out = tmp_path / "forged"
    run("forge", source, "--out", out, "--steps", "1", "--seq-len", "32", "--eval-tokens", "256",
        "--train-tokens", "1000", "--calib-windows", "4", "--target-params", "0.9", "--train", "lora", timeout=400)
    mlx = tmp_path / "forged-mlx"
    run("convert", out / "model", "--to", "mlx", "--out", mlx)
    run("card", mlx, "--report", out / "report.json")
    run("convert", out / "model", "--to", "gguf", "--out", tmp_path / "gguf" / "forged.gguf")
    written = [out / "report.md", mlx / "README.md", tmp_path / "gguf" / "forged.Modelfile"]
    for text in (path.read_text() for path in written):
        for machine in (str(tmp_path), "/tmp/", "/root/", str(__import__("pathlib").Path.home()) + "/"):
            assert machine not in text
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "sentinel.cli", "serve", str(mlx), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.3)
        body = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}'
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and noise(stderr) == [] and "error:" not in stderr, stderr
    lines = stderr.strip().splitlines()  # one line per request (a poll may time out and repeat on a busy CPU)
    assert lines[0].startswith("serving forged-mlx on ") and lines[-1] == "stopped (SIGINT)", stderr
    assert lines[-2].startswith("POST /v1/chat/completions 200 (prompt ")
    assert all(line.startswith("GET /v1/models 200") for line in lines[1:-2]), stderr
