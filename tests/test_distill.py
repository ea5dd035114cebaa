"""Distillation loss and full-parameter / distilled training."""

import copy

import pytest
import torch

from forge_cuda.pruning.defrag import defrag
from forge_cuda.distill import distill_loss
from forge_cuda.train import TrainConfig, train_model
from sentinel.errors import SentinelError
from tiny import pruned_layout, tiny_model, tokens


@pytest.mark.parametrize("top_k", [None, 5])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_loss_is_zero_when_student_equals_teacher(temperature, top_k):
    logits = torch.randn(2, 7, 96, dtype=torch.float64)
    loss = distill_loss(logits, logits.clone(), temperature, top_k=top_k)
    assert abs(loss.item()) <= 1e-12
    shifted = distill_loss(logits + 3.0, logits, temperature, top_k=top_k)  # softmax ignores a constant shift
    assert abs(shifted.item()) <= 1e-12
    assert distill_loss(torch.randn_like(logits), logits, temperature, top_k=top_k).item() > 1e-3


@pytest.mark.parametrize("top_k", [None, 5])
def test_gradient_matches_finite_difference(top_k):
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 3, 11, generator=g, dtype=torch.float64)
    student = torch.randn(2, 3, 11, generator=g, dtype=torch.float64, requires_grad=True)
    loss = distill_loss(student, teacher, temperature=1.5, top_k=top_k)
    (grad,) = torch.autograd.grad(loss, student)
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 7), (0, 1, 10)]:
        plus, minus = student.detach().clone(), student.detach().clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (distill_loss(plus, teacher, 1.5, top_k=top_k) - distill_loss(minus, teacher, 1.5, top_k=top_k)) / (2 * eps)
        assert abs(fd.item() - grad[idx].item()) <= 1e-7


def test_alpha_mixes_in_the_label_loss():
    logits = torch.randn(1, 4, 96)
    label = torch.tensor(2.5)
    assert distill_loss(logits, logits, alpha=0.25, label_loss=label).item() == pytest.approx(0.75 * 2.5)


def test_full_training_distils_a_pruned_student_toward_its_teacher():
    teacher = tiny_model("llama")
    student = defrag_copy(teacher)
    x = tokens(8, 24, seed=3)

    def kl():
        with torch.no_grad():
            return distill_loss(student(x).logits, teacher(x).logits).item()

    before = kl()
    frozen = teacher.model.layers[0].mlp.up_proj.weight.clone()
    cfg = TrainConfig(steps=20, batch_size=4, lr=3e-3, warmup_steps=1, trainable="full", seed=0)
    student, stats = train_model(student, x, cfg, progress=False, teacher=teacher)
    assert kl() < 0.6 * before, (before, kl())
    assert stats["loss"] == "distill" and stats["trainable"] == "full"
    assert stats["trainable_params"] == sum(p.numel() for p in student.parameters())
    assert torch.equal(teacher.model.layers[0].mlp.up_proj.weight, frozen)  # the teacher never moves
    assert not any(p.requires_grad for p in student.parameters())


def test_full_training_refuses_a_4bit_base():
    cfg = TrainConfig(steps=1, batch_size=2, trainable="full")
    with pytest.raises(SentinelError, match="--train full"):
        train_model(tiny_model("llama"), tokens(2, 8), cfg, progress=False, tier="nf4")


def defrag_copy(model):
    student = copy.deepcopy(model)
    defrag(student, pruned_layout(student))
    return student
