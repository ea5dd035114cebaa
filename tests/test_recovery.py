"""Recovery pieces on tiny models: block-local losses and training, the bounded teacher-state cache,
the budget split, bits per byte."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from forge_cuda.evaluate import bits_per_byte, perplexity, token_byte_lengths
from forge_cuda.families import family_for
from forge_cuda.recovery.blockcache import TeacherStates
from forge_cuda.recovery.blocklocal import BlockLocalConfig, cosine_loss, nmse_loss, train_blocks
from forge_cuda.recovery.budget import MAX_STEPS, parse_budget, plan_budget
from sentinel.errors import SentinelError
from tiny import tiny_model
from tiny_tokenizer import tiny_tokenizer


def _perturbed(model, scale=0.05, seed=3):
    student = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return student


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_block_loss_is_zero_when_the_student_block_is_the_teachers(model_type, tmp_path):
    teacher = tiny_model(model_type)
    student = copy.deepcopy(teacher)
    windows = torch.randint(0, 96, (4, 12), generator=torch.Generator().manual_seed(0))
    states = TeacherStates(teacher, windows, 2, tmp_path, max_bytes=10**8, dtype=torch.float32)
    states.fill()
    for i, block in enumerate(family_for(model_type).decoder_layers(student)):
        args, kwargs = states.call(i, torch.float32)
        h_in, h_out = states.pair(1, i)
        out = block(h_in, *args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        assert nmse_loss(out, h_out).item() <= 1e-12 and abs(cosine_loss(out, h_out).item()) <= 1e-6
    other = _perturbed(teacher).eval()
    block = family_for(model_type).decoder_layers(other)[0]
    out = block(states.pair(0, 0)[0], *states.call(0, torch.float32)[0], **states.call(0, torch.float32)[1])
    out = out[0] if isinstance(out, tuple) else out
    assert nmse_loss(out, states.pair(0, 0)[1]).item() > 1e-4


@pytest.mark.parametrize("loss", [nmse_loss, cosine_loss])
def test_block_loss_gradient_matches_finite_difference(loss):
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)
    student = torch.randn(2, 3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(student, teacher), student)
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 7), (0, 1, 5)]:
        plus, minus = student.detach().clone(), student.detach().clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (loss(plus, teacher) - loss(minus, teacher)) / (2 * eps)
        assert abs(fd.item() - grad[idx].item()) <= 1e-8
    assert loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-15)


def test_state_cache_respects_its_size_bound_and_recomputes_the_rest(tmp_path):
    teacher = tiny_model("llama")
    windows = torch.randint(0, 96, (10, 12), generator=torch.Generator().manual_seed(1))
    probe = TeacherStates(teacher, windows, 2, tmp_path / "probe", max_bytes=0, dtype=torch.float32)
    assert probe.cached == 0 and len(probe.batches) == 5
    bound = int(probe.batch_bytes * 2.5)
    states = TeacherStates(teacher, windows, 2, tmp_path / "cache", max_bytes=bound, dtype=torch.float32)
    states.fill()
    assert states.cached == 2 and len(list((tmp_path / "cache").glob("batch_*"))) == 2
    assert states.disk_bytes() <= bound
    full = torch.stack(probe._forward(probe.batches[0], 2))  # all four boundary states of batch 0
    for j in (0, 4):  # a cached batch and a recomputed one agree with a plain teacher forward
        reference = torch.stack(probe._forward(probe.batches[j], 2))
        h_in, h_out = states.pair(j, 1)
        assert torch.equal(h_in, reference[1]) and torch.equal(h_out, reference[2])
    assert full.shape[0] == 4


def test_blocklocal_training_lowers_every_changed_block_and_zero_steps_changes_nothing(tmp_path):
    teacher = tiny_model("llama")
    student = _perturbed(teacher)
    windows = torch.randint(0, 96, (16, 12), generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    stats = train_blocks(student, teacher, windows, BlockLocalConfig(steps=0), tmp_path / "none", progress=False)
    assert stats["steps"] == 0 and all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    stats = train_blocks(student, teacher, windows, BlockLocalConfig(steps=12, lr=3e-3, batch_size=4),
                         tmp_path / "run", progress=False)
    assert len(stats["blocks"]) == 3 and stats["tokens"] == 12 * 4 * 12
    assert all(b["last_loss"] < 0.5 * b["first_loss"] for b in stats["blocks"])
    assert stats["cached_batches"] == 4  # 12 steps cycle over the 16 windows' 4 batches
    short = train_blocks(_perturbed(teacher), teacher, windows, BlockLocalConfig(steps=2, batch_size=4),
                         tmp_path / "short", progress=False)
    assert short["batches"] == 2  # only the windows two steps will see get teacher states


def test_budget_parses_time_and_tokens_and_rejects_the_rest():
    assert parse_budget("45m").seconds == 2700 and parse_budget("1.5h").seconds == 5400
    assert parse_budget("600s").seconds == 600
    assert parse_budget("200k").tokens == 200_000 and parse_budget("1.5M").tokens == 1_500_000
    assert parse_budget("300000").tokens == 300_000
    for bad in ("lots", "45 parsecs", "0", "-3m", ""):
        with pytest.raises(SentinelError, match="--budget"):
            parse_budget(bad)


def test_budget_splits_evenly_over_cycles_and_by_share_over_phases():
    plans = plan_budget(parse_budget("200k"), 3, tokens_per_step=1024, blocklocal_share=0.25, blocks=30,
                        blocklocal_tokens_per_step=512)
    per_cycle = [200_000 // 3, 200_000 // 3, 200_000 // 3 + 200_000 % 3]
    for plan, tokens in zip(plans, per_cycle):
        assert plan.blocklocal_steps == round(tokens * 0.25) // 512
        assert plan.kd_steps == (tokens - round(tokens * 0.25)) // 1024
        assert plan.blocklocal_steps * 512 + plan.kd_steps * 1024 <= tokens
    timed = plan_budget(parse_budget("30m"), 2, 1024, 0.5, blocks=10)
    assert all(p.kd_seconds == 450 and p.blocklocal_seconds_per_block == 45 for p in timed)
    assert timed[0].kd_steps == MAX_STEPS
    assert plan_budget(parse_budget("30m"), 2, 1024, 0.0, blocks=10)[0].blocklocal_steps == 0


class _Uniform(nn.Module):
    """Equal logits over a vocabulary of 4: every target costs ln 4 nats."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 4) + self.dummy)


def test_bits_per_byte_on_a_hand_computed_example():
    windows = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 1]])
    token_bytes = torch.tensor([0, 1, 2, 3])  # id 0 is special (0 bytes)
    out = perplexity(_Uniform(), windows, batch_size=1, progress=False, token_bytes=token_bytes)
    # targets 1,2,3 and 2,1,1: 6 tokens, 1+2+3 + 2+1+1 = 10 bytes, 6 ln 4 nats = 12 bits
    assert out["tokens"] == 6 and out["predicted_bytes"] == 10
    assert out["nll"] == pytest.approx(6 * math.log(4)) and out["bpb"] == pytest.approx(1.2)
    assert out["ppl"] == pytest.approx(4.0) and bits_per_byte(12 * math.log(2), 10) == pytest.approx(1.2)


def test_token_bytes_add_up_to_the_texts_utf8_bytes():
    tok = tiny_tokenizer()
    table = token_byte_lengths(tok, size=400)
    text = "def f(x):\n    return 'héllo ✓ 日本'  # ok\n\tpass"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert int(table[ids].sum()) == len(text.encode("utf-8")) and len(table) == 400
    assert table[tok.eos_token_id] == 0


@pytest.mark.slow
def test_blocks_split_over_two_ranks_give_every_rank_the_single_process_result(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    worker = Path(__file__).parent / "ddp_blocklocal_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "rank0.txt").read_text() == "0,2" and (tmp_path / "rank1.txt").read_text() == "1"
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = tmp_path / "single"
    single.mkdir()
    proc = subprocess.run([sys.executable, str(worker), str(single)], capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = load_file(str(single / "rank0.safetensors"))
    assert all(torch.allclose(a[k], one[k], atol=1e-6) for k in a)
