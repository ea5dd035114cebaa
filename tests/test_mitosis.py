"""Head mitosis: function-preserving clones inside their KV group that survive save -> load."""

import pytest
import torch

from forge_cuda.checkpoint import load_model, param_count, save_model
from forge_cuda.pruning.defrag import defrag, model_layout
from forge_cuda.families import family_for
from forge_cuda.pruning.importance import score_heads
from forge_cuda.pruning.mitosis import apply_mitosis, clone_heads, plan_mitosis
from sentinel.errors import LayoutError
from sentinel.layout import LayerHeads
from tiny import tiny_model, tokens


def pruned(family):
    """A model whose attention layers kept one query head per KV group: room for one clone per group."""
    model = tiny_model(family)
    layout = model_layout(model)
    for i in family_for(model.config.model_type).attention_layers(model):
        layout = layout.replace_layer(i, LayerHeads((1, 2, 5, 6), (0, 1, 2, 3)))
    defrag(model, layout)
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "qwen3_5_text"])
def test_clone_preserves_logits_and_survives_save_load(family, tmp_path):
    model = pruned(family)
    layer = family_for(model.config.model_type).attention_layers(model)[-1]
    x = tokens()
    with torch.no_grad():
        before = model(x).logits
    params = param_count(model)
    layout = clone_heads(model, layer, [1, 2, 5, 6], split=0.5)
    assert layout.layers[layer] == LayerHeads((1, 8, 2, 9, 5, 10, 6, 11), (0, 1, 2, 3),
                                              {8: 1, 9: 2, 10: 5, 11: 6})
    with torch.no_grad():
        after = model(x).logits
    assert (after - before).abs().max().item() <= 1e-5
    q_rows = 16 * family_for(model.config.model_type).q_blocks
    bias = 1 if family == "qwen2" else 0
    assert param_count(model) - params == 4 * (q_rows * (64 + bias) + 16 * 64)
    save_model(model, tmp_path / "grown")
    loaded = load_model(tmp_path / "grown", attn_implementation="eager")
    assert model_layout(loaded) == layout
    with torch.no_grad():
        assert (loaded(x).logits - before).abs().max().item() <= 1e-5


def test_uneven_split_still_preserves_the_function_and_clones_can_be_pruned_again():
    model = pruned("llama")
    x = tokens()
    with torch.no_grad():
        before = model(x).logits
    clone_heads(model, 0, [2, 5, 1, 6], split=0.7)
    with torch.no_grad():
        assert (model(x).logits - before).abs().max().item() <= 1e-5
    o = model.model.layers[0].self_attn.o_proj.weight
    torch.testing.assert_close(o[:, 16:32] / 0.3, o[:, 0:16] / 0.7)  # clone of head 1 sits beside it
    # a clone of a clone descends from the original head
    layout = clone_heads(model, 0, [8, 9, 10, 11], allow_growth=True)
    assert layout.layers[0].clone_of[12] == 1
    with torch.no_grad():
        assert (model(x).logits - before).abs().max().item() <= 1e-5
    # defrag removes clones like any other head
    keep = LayerHeads((1, 9, 5, 11), (0, 1, 2, 3), {9: 2, 11: 6})
    defrag(model, layout.replace_layer(0, keep))
    assert model.model.layers[0].self_attn.q_proj.out_features == 64
    with torch.no_grad():  # head 2 and its clone 9 now carry only the clone's 0.3 share
        assert (model(x).logits - before).abs().max().item() > 1e-4


def test_plan_clones_the_best_head_of_every_group():
    model = pruned("qwen3")
    x = tokens()
    with torch.no_grad():
        before = model(x).logits
    scores = score_heads(model, [x], "taylor", progress=False)
    plan = plan_mitosis(scores, max_rounds=1)
    assert sorted(plan) == [0, 1, 2] and all(sorted(p) == [1, 2, 5, 6] for p in plan.values())
    layout = apply_mitosis(model, plan)
    assert layout.q_counts == [8, 8, 8]
    with torch.no_grad():
        assert (model(x).logits - before).abs().max().item() <= 1e-5
    assert plan_mitosis(score_heads(model, [x], "random", progress=False)) == {}  # no capacity left


def test_clones_must_respect_equal_groups_and_freed_capacity():
    model = pruned("llama")
    with pytest.raises(LayoutError, match=r"layer 0: 5 query heads is not a multiple of 4 KV heads \(one round of mitosis clones one head in every kept KV group\)"):
        clone_heads(model, 0, [1])
    with pytest.raises(LayoutError, match="layer 0: head 3 is not kept"):
        clone_heads(model, 0, [3, 1, 5, 6])
    full = tiny_model("llama")
    with pytest.raises(LayoutError, match="layer 0: 4 clones but only 0 heads of freed capacity"):
        clone_heads(full, 0, [0, 2, 4, 6])
    assert clone_heads(full, 0, [0, 2, 4, 6], allow_growth=True).layers[0].num_heads == 12
    with pytest.raises(LayoutError, match="gpt2 has one KV head per query head"):
        clone_heads(tiny_model("gpt2"), 0, [0])
