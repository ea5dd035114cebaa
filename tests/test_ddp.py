"""Multi-process training through accelerate (DDP, gloo on CPU): ranks see different data, end identical."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny import tiny_model
from tiny_tokenizer import save_tiny_checkpoint, tiny_tokenizer

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]


def run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=240, env=env, **kw)


@pytest.mark.slow
def test_two_ranks_train_different_shards_into_identical_weights(tmp_path):
    proc = run([str(Path(__file__).parent / "ddp_train_worker.py"), str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "gradients were not synchronised across ranks"
    start = tiny_model("llama").state_dict()
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], start["model.layers.0.self_attn.q_proj.weight"])
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text() == str(4 * 4 * 15)


@pytest.mark.slow
def test_forge_under_torchrun_writes_one_output_from_the_main_process(tmp_path):
    src = save_tiny_checkpoint(tiny_model("llama", vocab_size=len(tiny_tokenizer())), tmp_path / "src")
    out = tmp_path / "out"
    proc = run(["-m", "sentinel.cli", "forge", str(src), "--out", str(out), "--steps", "2", "--batch-size", "2",
                "--seq-len", "32", "--train-tokens", "4000", "--eval-tokens", "512", "--calib-windows", "4",
                "--cycles", "1", "--prune-level", "0.5"], cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("forged model:") == 1  # only the main process reports
    assert (out / "report.json").is_file() and (out / "model" / "config.json").is_file()
    assert not (tmp_path / "out.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
