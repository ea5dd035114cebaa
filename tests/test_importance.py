"""Importance criteria: shapes, finiteness, reproducibility, and that they find a head known to be dead."""

import json

import numpy as np
import pytest
import torch

from forge_cuda.pruning.defrag import defrag, model_layout
from head_gates import HeadGates
from forge_cuda.pruning.importance import CRITERIA, combine, load_scores, score_heads
from sentinel.errors import SentinelError
from sentinel.layout import LayerHeads
from tiny import tiny_model, tokens

DEAD = (1, 5)  # layer 1, query head 5


def dead_head_model(family="llama", weights_too=False):
    """A model where one head's o_proj columns (and optionally q rows) are zero: it contributes nothing."""
    model = tiny_model(family)
    attn = model.model.layers[DEAD[0]].self_attn
    hd = attn.head_dim
    cols = slice(DEAD[1] * hd, (DEAD[1] + 1) * hd)
    with torch.no_grad():
        attn.o_proj.weight[:, cols] = 0
        if weights_too:
            attn.q_proj.weight[cols] = 0
            if attn.q_proj.bias is not None:
                attn.q_proj.bias[cols] = 0
    return model


def batches():
    return [tokens(2, 16, seed=1), tokens(2, 16, seed=2)]


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("family", ["qwen2", "gpt2", "qwen3_5_text"])
def test_every_criterion_gives_finite_scores_per_current_head(family, criterion):
    model = tiny_model(family)
    scores = score_heads(model, batches(), criterion, progress=False)
    layout = model_layout(model)
    grid = scores.grid()
    assert grid.shape == (layout.base.num_layers, layout.base.num_heads)
    for i, s in scores.layers.items():
        assert s.shape == (layout.layers[i].num_heads,) and np.isfinite(s).all()
    if family == "qwen3_5_text":  # linear-attention layers have no heads to score
        assert sorted(scores.layers) == [3] and np.isnan(grid[:3]).all()
    if criterion != "random":
        assert all((s >= 0).all() for s in scores.layers.values())
    assert len({float(v) for s in scores.layers.values() for v in s}) > 3  # not a constant


def test_scores_follow_an_irregular_layout_with_nan_for_removed_heads(tmp_path):
    model = tiny_model("llama")
    layout = model_layout(model).replace_layer(0, LayerHeads((1, 3, 5, 7), (0, 1, 2, 3)))
    defrag(model, layout)
    scores = score_heads(model, batches(), "activation", progress=False)
    assert scores.layers[0].shape == (4,) and scores.layers[1].shape == (8,)
    grid = scores.grid()
    assert np.isnan(grid[0, [0, 2, 4, 6]]).all() and np.isfinite(grid[0, [1, 3, 5, 7]]).all()
    path = scores.save(tmp_path)
    saved = json.loads(path.read_text())
    assert saved["layers"][0]["units"] == [1, 3, 5, 7] and saved["kind"] == "heads"
    np.testing.assert_array_equal(np.load(tmp_path / "scores_activation.npy"), grid)
    again = load_scores(path, layout)
    np.testing.assert_allclose(again.layers[0], scores.layers[0])


@pytest.mark.parametrize("criterion", ["taylor", "activation"])
def test_dead_head_ranks_last_in_its_layer(criterion):
    scores = score_heads(dead_head_model(), batches(), criterion, progress=False).layers[DEAD[0]]
    assert int(np.argmin(scores)) == DEAD[1]
    assert scores[DEAD[1]] < 1e-6 < np.sort(scores)[1]


def test_magnitude_finds_the_dead_head_only_when_its_weights_are_zero():
    alive = score_heads(dead_head_model(), [], "magnitude", progress=False).layers[DEAD[0]]
    dead = score_heads(dead_head_model(weights_too=True), [], "magnitude", progress=False).layers[DEAD[0]]
    assert int(np.argmin(dead)) == DEAD[1]
    assert dead[DEAD[1]] < alive[DEAD[1]]


def test_taylor_is_the_gate_derivative_of_the_loss():
    """|dL/dg| at g=1 against a central finite difference through the same gate (batch of one)."""
    model = tiny_model("llama").double()
    x = tokens(1, 16, seed=3)
    taylor = score_heads(model, [x], "taylor", progress=False).layers[2]
    eps = 1e-2  # RMSNorm computes in fp32 even in an fp64 model: a larger step beats its rounding noise
    with HeadGates(model) as gates:
        def loss(g):
            gates.values[2][4] = g
            with torch.no_grad():  # HF's loss upcasts to fp32 only: compute it in fp64 here
                logits = model(input_ids=x).logits[0, :-1]
                return torch.nn.functional.cross_entropy(logits, x[0, 1:]).item()
        finite = abs(loss(1 + eps) - loss(1 - eps)) / (2 * eps)
    assert taylor[4] == pytest.approx(finite, rel=1e-3)


def test_loss_ignores_only_padding():
    model = tiny_model("llama")
    x = tokens(2, 16, seed=4)
    mask = torch.ones_like(x)
    mask[1, 10:] = 0
    other = x.clone()
    other[1, 10:] = (other[1, 10:] + 7) % 96  # different garbage behind the padding
    a = score_heads(model, [{"input_ids": x, "attention_mask": mask}], "taylor", progress=False)
    b = score_heads(model, [{"input_ids": other, "attention_mask": mask}], "taylor", progress=False)
    c = score_heads(model, [x], "taylor", progress=False)
    for i in a.layers:
        np.testing.assert_allclose(a.layers[i], b.layers[i], rtol=1e-4, atol=1e-9)
    assert not np.allclose(a.layers[0], c.layers[0])


def test_random_is_reproducible_with_a_seed():
    model = tiny_model("llama")
    a, b = (score_heads(model, [], "random", seed=7, progress=False) for _ in range(2))
    c = score_heads(model, [], "random", seed=8, progress=False)
    np.testing.assert_array_equal(a.grid(), b.grid())
    assert not np.array_equal(a.grid(), c.grid())


def test_entropy_prefers_focused_heads():
    """A head forced to attend uniformly (zero q rows) has entropy at its maximum: focus 0."""
    model = tiny_model("llama")
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        attn.q_proj.weight[2 * 16:3 * 16] = 0
        attn.q_proj.weight[6 * 16:7 * 16] *= 40  # sharp attention
    s = score_heads(model, batches(), "entropy", progress=False).layers[0]
    assert s[2] == pytest.approx(0.0, abs=1e-6)
    assert int(np.argmax(s)) == 6 and 0 < s[6] <= 1
    model.set_attn_implementation("sdpa")  # sdpa returns no attention weights: scoring switches to eager
    again = score_heads(model, batches(), "entropy", progress=False).layers[0]
    np.testing.assert_allclose(again, s, rtol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # and restores the user's choice


def test_normalisation_and_combination():
    model = tiny_model("llama")
    t = score_heads(model, batches(), "taylor", progress=False)
    e = score_heads(model, batches(), "entropy", progress=False)
    n = t.normalized("l2")
    for s in n.layers.values():
        assert np.linalg.norm(s) == pytest.approx(1.0)
    both = combine({"taylor": t, "entropy": e}, {"taylor": 1.0, "entropy": 0.5})
    want = n.layers[1] + 0.5 * e.normalized("l2").layers[1]
    np.testing.assert_allclose(both.layers[1], want)
    assert both.criterion == "1*taylor+0.5*entropy"


def test_bad_inputs_are_one_line_errors():
    model = tiny_model("llama")
    with pytest.raises(SentinelError, match="unknown criterion 'norm'; choose from taylor"):
        score_heads(model, batches(), "norm")
    with pytest.raises(SentinelError, match="taylor needs calibration batches; got none"):
        score_heads(model, [], "taylor")
    with pytest.raises(SentinelError, match=r"must be \[batch, seq_len\] token ids"):
        score_heads(model, [torch.zeros(5, dtype=torch.long)], "activation", progress=False)
