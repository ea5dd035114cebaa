"""GQA-aware selection: exact fractions where shapes allow, valid layouts always, lowest scores go first."""

import itertools

import numpy as np
import pytest

from forge_cuda.pruning.importance import UnitScores
from forge_cuda.pruning.search import layer_shapes, select_heads
from sentinel.errors import SentinelError
from sentinel.layout import AttentionShape, HeadLayout, LayerHeads

BASE = AttentionShape(num_layers=3, num_heads=8, num_kv_heads=4, head_dim=16, hidden_size=128)


def scores_for(values, layout=None, criterion="test"):
    layout = layout or HeadLayout.full(BASE)
    return UnitScores(criterion, layout, {i: np.asarray(v, dtype=float) for i, v in enumerate(values)})


def random_scores(seed=0, layout=None):
    layout = layout or HeadLayout.full(BASE)
    rng = np.random.default_rng(seed)
    return scores_for([rng.random(layer.num_heads) for layer in layout.layers], layout)


def kept_value(scores, layout):
    total = 0.0
    for i, layer in enumerate(layout.layers):
        pos = {h: p for p, h in enumerate(scores.layout.layers[i].q_heads)}
        total += sum(scores.layers[i][pos[h]] for h in layer.q_heads)
    return total


def test_query_mode_removes_lowest_heads_inside_groups_and_keeps_kv():
    # layer 0: in every group the second head is weak; layers 1-2 are strong everywhere
    s = scores_for([[9, 1, 9, 1, 9, 1, 9, 1], [9] * 8, [8] * 8])
    sel = select_heads(s, level=4 / 24, mode="query")
    assert sel.removed == sel.requested == 4
    assert sel.layout.layers[0] == LayerHeads((0, 2, 4, 6), (0, 1, 2, 3))
    assert sel.layout.layers[1:] == HeadLayout.full(BASE).layers[1:]


def test_group_mode_removes_whole_groups_and_shrinks_kv():
    s = scores_for([[9, 9, 1, 1, 9, 9, 9, 9], [9, 9, 9, 9, 2, 2, 9, 9], [9] * 8])
    sel = select_heads(s, level=4 / 24, mode="group")
    assert sel.layout.layers[0] == LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))
    assert sel.layout.layers[1] == LayerHeads((0, 1, 2, 3, 6, 7), (0, 1, 3))
    for layer in sel.layout.layers:
        assert layer.num_heads == 2 * layer.num_kv_heads


def test_auto_drops_a_kv_head_when_its_whole_group_is_weakest():
    s = scores_for([[1, 1, 5, 6, 5, 6, 5, 6], [9] * 8, [9] * 8])
    auto = select_heads(s, level=2 / 24, mode="auto")
    assert auto.layout.layers[0] == LayerHeads((2, 3, 4, 5, 6, 7), (1, 2, 3))
    assert select_heads(s, level=2 / 24, mode="query").removed == 0  # 0 and 4 are equally close: fewer wins
    query = select_heads(s, level=3 / 24, mode="query").layout.layers[0]
    assert query == LayerHeads((0, 3, 5, 7), (0, 1, 2, 3))  # one head per group, to stay legal


@pytest.mark.parametrize("mode", ["query", "group", "auto"])
@pytest.mark.parametrize("level", [0.1, 0.33, 0.5, 0.7])
def test_every_selection_is_valid_and_as_close_as_the_shapes_allow(mode, level):
    s = random_scores(seed=int(level * 100))
    sel = select_heads(s, level, mode=mode, min_heads=2)
    sel.layout.validate()
    for i, layer in enumerate(sel.layout.layers):
        assert layer.num_heads >= 2
        if mode == "query":
            assert layer.kv_heads == (0, 1, 2, 3)
        if mode == "group":
            assert layer.num_heads == 2 * layer.num_kv_heads
    assert sel.removed == 24 - sum(sel.layout.q_counts)
    # brute force over every combination of legal layer shapes: nothing gets closer, nothing keeps more score
    options = [layer_shapes(s.layout, i, s.layers[i], mode, 2) for i in range(3)]
    best = min(abs(sum(o.removed for o in combo) - sel.requested) for combo in itertools.product(*options))
    assert abs(sel.removed - sel.requested) == best
    top = max(sum(o.value for o in combo) for combo in itertools.product(*options)
              if sum(o.removed for o in combo) == sel.removed)
    assert kept_value(s, sel.layout) == pytest.approx(top)


def test_per_layer_scope_prunes_each_layer_alike():
    sel = select_heads(random_scores(3), 0.5, mode="auto", scope="layer")
    assert sel.layout.q_counts == [4, 4, 4]


def test_min_heads_is_respected_even_when_a_layer_is_useless():
    s = scores_for([[0.01] * 8, [9] * 8, [9] * 8])
    sel = select_heads(s, level=8 / 24, mode="auto", min_heads=3)
    assert sel.layout.layers[0].num_heads >= 3


def test_selection_on_an_already_pruned_layout_with_clones():
    layout = HeadLayout.full(BASE).replace_layer(
        0, LayerHeads((0, 8, 2, 9, 4, 10, 6, 11), (0, 1, 2, 3), {8: 0, 9: 2, 10: 4, 11: 6}))
    layout = layout.replace_layer(1, LayerHeads((0, 1, 6, 7), (0, 3)))
    s = scores_for([[5, 1, 5, 1, 5, 1, 5, 1], [5, 5, 5, 5], [5] * 8], layout)
    sel = select_heads(s, level=4 / 20, mode="query")
    assert sel.layout.layers[0] == LayerHeads((0, 2, 4, 6), (0, 1, 2, 3))  # clones 8-11 removed, clone_of gone
    assert sel.total == 20


def test_level_zero_is_a_no_op_and_bad_arguments_are_clear():
    s = random_scores()
    assert select_heads(s, 0.0).layout == s.layout
    with pytest.raises(SentinelError, match=r"level must be a fraction in \[0, 1\)"):
        select_heads(s, 1.0)
    with pytest.raises(SentinelError, match="unknown mode 'heads'"):
        select_heads(s, 0.3, mode="heads")
    with pytest.raises(SentinelError, match="layer 0: 3 scores for 8 heads"):
        select_heads(scores_for([[1, 2, 3], [1] * 8, [1] * 8]), 0.3)


def test_query_mode_on_multi_head_attention_explains_itself():
    mha = AttentionShape(num_layers=2, num_heads=4, num_kv_heads=4, head_dim=16, hidden_size=64)
    s = random_scores(layout=HeadLayout.full(mha))
    with pytest.raises(SentinelError, match="use --mode group or auto"):
        select_heads(s, 0.5, mode="query")
    sel = select_heads(s, 0.5, mode="auto")
    assert sel.removed == 4 and all(l.q_heads == l.kv_heads for l in sel.layout.layers)
