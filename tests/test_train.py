"""LoRA training (peft), memory tiers and status.json."""

import json
import threading

import pytest
import torch

from forge_cuda.evaluate import perplexity
from forge_cuda.status import Status
from forge_cuda.tiers import GiB, choose_tier
from forge_cuda.train import TrainConfig, train_model
from sentinel.errors import SentinelError
from tiny import tiny_model


def repetitive_windows(n=16, length=24):
    """A learnable pattern: each window counts upward from a random start."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 50, (n, 1), generator=g)
    return (starts + torch.arange(length)) % 96


def test_lora_training_lowers_loss_and_merges_into_plain_weights():
    model = tiny_model("llama")
    windows = repetitive_windows()
    before = perplexity(model, windows, progress=False)["loss"]
    w0 = model.model.layers[0].self_attn.q_proj.weight.clone()
    cfg = TrainConfig(steps=25, batch_size=4, lr=5e-3, warmup_steps=2, lora_rank=8, lora_dropout=0.0)
    merged, stats = train_model(model, windows, cfg, progress=False)
    after = perplexity(merged, windows, progress=False)["loss"]
    assert after < before - 0.5, (before, after)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, w0)
    assert stats["precision"] == "fp32" and stats["tokens"] == 25 * 4 * 23 and stats["trainable_params"] > 0


def test_training_is_reproducible_with_a_seed():
    cfg = TrainConfig(steps=5, batch_size=4, lr=1e-3, lora_rank=4)
    a, _ = train_model(tiny_model("qwen2"), repetitive_windows(), cfg, progress=False)
    b, _ = train_model(tiny_model("qwen2"), repetitive_windows(), cfg, progress=False)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_gradient_checkpointing_gives_the_same_weights():
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, lora_rank=4, lora_dropout=0.0)
    plain, _ = train_model(tiny_model("llama"), repetitive_windows(), cfg, progress=False)
    cfg.gradient_checkpointing = True
    ckpt, _ = train_model(tiny_model("llama"), repetitive_windows(), cfg, progress=False)
    for (n, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_tier_picks_nf4_on_a_small_gpu_and_full_on_a_large_one():
    eight_b = 8_000_000_000
    assert choose_tier(eight_b, "cuda", 24 * GiB).name == "nf4"
    assert choose_tier(eight_b, "cuda", 80 * GiB).name == "full"
    assert "exceeds 90% of 24.0 GiB" in choose_tier(eight_b, "cuda", 24 * GiB).reason
    assert choose_tier(eight_b, "cuda", 24 * GiB, requested="full").name == "full"


def test_nf4_tier_is_refused_on_cpu():
    assert choose_tier(135_000_000, "cpu", None).name == "full"
    with pytest.raises(SentinelError, match="the nf4 tier needs a CUDA GPU"):
        choose_tier(135_000_000, "cpu", None, requested="nf4")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 training needs CUDA (bitsandbytes 4-bit kernels)")
def test_nf4_training_merges_into_master_weights():
    pytest.importorskip("bitsandbytes", reason="NF4 training needs bitsandbytes (carried as a wheel: docs/GPU.md)")
    model = tiny_model("llama")
    w0 = model.model.layers[0].mlp.up_proj.weight.clone()
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, lora_rank=4)
    merged, stats = train_model(model, repetitive_windows(), cfg, tier="nf4", device=torch.device("cuda"),
                               progress=False)
    assert merged is model and not torch.equal(model.model.layers[0].mlp.up_proj.weight, w0)


def test_status_json_schema_and_atomic_rewrites(tmp_path):
    path = tmp_path / "status.json"
    status = Status(path, cycles=2)
    keys = {"phase", "cycle", "cycles", "step", "steps", "loss", "tokens_per_s", "eta_s", "started_at",
            "updated_at", "message"}
    assert set(json.loads(path.read_text())) == keys
    torn, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError:
                torn.append(1)

    t = threading.Thread(target=reader)
    t.start()
    for step in range(300):
        status.update(phase="train", step=step, loss=1.0 / (step + 1), message="x" * (step % 50) * 40)
    stop.set()
    t.join()
    assert not torn
    assert json.loads(path.read_text())["step"] == 299
    assert not [p for p in tmp_path.iterdir() if p.name != "status.json"]  # no temp files left
    with pytest.raises(ValueError):
        status.update(phase="dancing")
