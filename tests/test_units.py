"""MLP channels as prunable units beside heads: masked == defragged == reloaded, exact counts, the size knob."""

import copy

import mlx.core as mx
import numpy as np
import pytest
import torch

from forge_cuda.checkpoint import load_model, param_count, save_model
from forge_cuda.pruning.defrag import defrag, model_layout
from forge_cuda.families import family_for
from forge_cuda.pruning.hooks import hook_units
from forge_cuda.pruning.importance import score_units
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.search import greedy_search
from forge_cuda.pruning.space import channel_group_for, unit_costs
from forge_cuda.pruning.step import prune_model
from sentinel.layout import LayerHeads
from tiny import PRUNED, tiny_model, tokens

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "qwen3_5_text"]
CHANNELS = {0: tuple(range(0, 96, 2)), 2: tuple(c for c in range(96) if c % 3)}  # 48 and 64 of 96 kept


def mlp_layout(model, heads_too: bool):
    """Channels pruned in layers 0 and 2; with ``heads_too`` the tiny PRUNED head layout as well (llama-like)."""
    layout = model_layout(model)
    for i, channels in CHANNELS.items():
        i = min(i, len(layout.layers) - 1)
        layer = PRUNED.get(i, layout.layers[i]) if heads_too else layout.layers[i]
        layout = layout.replace_layer(i, LayerHeads(layer.q_heads, layer.kv_heads, layer.clone_of, channels))
    if heads_too:
        layout = layout.replace_layer(1, PRUNED[1])
    return layout.validate()


def masked_copy(model, layout):
    """The unpruned model with removed channels (and heads) silenced by zeroing their reader's input weights."""
    masked = copy.deepcopy(model)
    family = family_for(model.config.model_type)
    full = model_layout(model)
    with torch.no_grad():
        for kind in ("channels", "heads"):
            for i in family.unit_layers(masked, kind):
                ids = full.channels(i) if kind == "channels" else full.layers[i].q_heads
                keep = set(layout.channels(i) if kind == "channels" else layout.layers[i].q_heads)
                width = family.unit_width(masked, i, kind)
                reader = family.unit_reader(masked, i, kind)
                for p, u in enumerate(ids):
                    if u not in keep:
                        cols = slice(p * width, (p + 1) * width)
                        if model.config.model_type == "gpt2":
                            reader.weight[cols, :] = 0  # Conv1D: inputs are rows
                        else:
                            reader.weight[:, cols] = 0
    return masked


def expected_params(model, layout) -> int:
    """The base count minus removed units times their per-unit cost (costs read off the unpruned modules)."""
    costs, base = unit_costs(model), model_layout(model)
    removed = 0
    for i, c in costs.items():
        removed += (base.layers[i].num_heads - layout.layers[i].num_heads) * c.per_q
        removed += (base.layers[i].num_kv_heads - layout.layers[i].num_kv_heads) * c.per_kv
        removed += (base.mlp_widths[i] - layout.mlp_widths[i]) * c.per_channel
    return param_count(model) - removed


@pytest.mark.parametrize("heads_too", [False, True], ids=["mlp", "heads+mlp"])
@pytest.mark.parametrize("family", FAMILIES)
def test_masked_equals_defragged_equals_reloaded(family, heads_too, tmp_path):
    if heads_too and family in ("gpt2", "qwen3_5_text"):
        pytest.skip("PRUNED heads fit the llama-like 8/4 tiny configs; gpt2/qwen3_5 heads are tested in test_families")
    model = tiny_model(family)
    layout = mlp_layout(model, heads_too)
    want_params = expected_params(model, layout)
    reference = masked_copy(model, layout)
    x = tokens()
    defrag(model, layout)
    save_model(model, tmp_path / "forged")
    loaded = load_model(tmp_path / "forged", attn_implementation="eager")
    with torch.no_grad():
        want = reference(x).logits
        assert (model(x).logits - want).abs().max().item() <= 1e-5
        assert (loaded(x).logits - want).abs().max().item() <= 1e-5
    assert model_layout(loaded) == layout
    assert param_count(loaded) == want_params == param_count(model)
    assert family_for(family).mlp_widths(loaded)[0] == 48


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_converted_mlx_logits_match_torch(family, tmp_path):
    from convert import convert_to_mlx
    from runtime_mlx import load_model as load_mlx

    model = tiny_model(family)
    defrag(model, mlp_layout(model, heads_too=family != "gpt2"))
    src = save_model(model, tmp_path / "forged")
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    x = tokens()
    with torch.no_grad():
        want = model(x).logits.numpy()
    got = np.array(load_mlx(out)(mx.array(x.numpy())).astype(mx.float32))
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("target", [0.9, 0.75, 0.6])
@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_target_lands_within_one_channel_group(family, target):
    model = tiny_model(family)
    base = param_count(model)
    report, _ = prune_model(model, [tokens(4, 16)], PruneOptions(criterion="activation", target_params=target,
                                                                 normalize="none", refit=False), progress=False)
    layout = model_layout(model)
    group_cost = channel_group_for(layout) * max(c.per_channel for c in unit_costs(tiny_model(family)).values())
    goal = round(target * base)
    assert report["params"]["after"] == param_count(model) == base - report["target"]["removed"]
    assert goal - group_cost < param_count(model) <= goal
    assert report["mlp_channels"]["removed"] > 0


def test_selection_prefers_the_cheapest_importance_per_parameter():
    """A layer whose channels score zero loses channels first; heads go only when they are cheaper per parameter."""
    model = tiny_model("llama")
    layout = model_layout(model)
    scores = score_units(model, [tokens(4, 16)], "random", ("heads", "channels"))
    scores["channels"].layers[1][:] = 0.0
    for s in scores["heads"].layers.values():
        s[:] = 1e6
    selector = greedy_search(layout, unit_costs(model), scores["heads"], scores["channels"],
                            channel_group=channel_group_for(layout), min_channels=10)
    picked = selector.select(96 * 192 // 2)
    assert picked.moves["group"] == picked.moves["query"] == 0
    assert picked.layout.mlp_widths[1] == 48 and picked.layout.mlp_widths[0] == 96


@pytest.mark.parametrize("criterion", ["activation", "taylor"])
def test_dead_channel_ranks_last(criterion):
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[:, 7] = 0
    s = score_units(model, [tokens(4, 16), tokens(4, 16, seed=2)], criterion, ("channels",))["channels"].layers[1]
    assert s[7] == s.min() and s[7] < np.sort(s)[1]


def test_channel_gates_hook_the_intermediate_activation():
    """hook_units('channels') sees [..., channels, 1] and zeroing a channel there equals removing it."""
    model = tiny_model("llama")
    x = tokens()
    layout = mlp_layout(model, heads_too=False)
    keep = {i: torch.tensor([c in set(layout.channels(i)) for c in range(96)], dtype=torch.float32)
            for i in range(3)}
    handles = hook_units(model, lambda i, u: u * keep[i][:, None], "channels")
    with torch.no_grad():
        gated = model(x).logits
    for h in handles:
        h.remove()
    defrag(model, layout)
    with torch.no_grad():
        assert (model(x).logits - gated).abs().max().item() <= 1e-5


def test_explicit_mlp_level_removes_that_fraction_of_channels():
    model = tiny_model("qwen2")
    report, scores = prune_model(model, [tokens(4, 16)], PruneOptions(criterion="taylor", level=0.0, mlp_level=0.5, refit=False),
                                 progress=False)
    assert set(scores) == {"channels"}
    assert report["mlp_channels"]["removed"] >= 144 and sum(model_layout(model).mlp_widths) == 288 - \
        report["mlp_channels"]["removed"]
    assert sum(model_layout(model).q_counts) == 24


def test_mlx_quantization_keeps_irregular_mlp_widths_dense(tmp_path):
    """Widths the group size divides are quantized; the others fall back to dense, and the model still runs."""
    import json

    from convert import convert_to_mlx
    from runtime_mlx import load_model as load_mlx

    model = tiny_model("llama", intermediate_size=128)
    layout = model_layout(model)
    for i, channels in {0: tuple(range(64)), 2: tuple(range(0, 128, 4)) + tuple(range(1, 128, 4))[:16]}.items():
        layer = layout.layers[i]
        layout = layout.replace_layer(i, LayerHeads(layer.q_heads, layer.kv_heads, mlp_channels=tuple(sorted(channels))))
    defrag(model, layout)
    src = save_model(model, tmp_path / "forged")
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32", quantize=8, group_size=32)
    dense = {k for k, v in json.loads((out / "config.json").read_text())["quantization"].items() if v is False}
    assert "model.layers.2.mlp.down_proj" in dense  # 48 inputs: not a multiple of 32
    assert "model.layers.0.mlp.down_proj" not in dense and "model.layers.1.mlp.down_proj" not in dense
    x = tokens()
    with torch.no_grad():
        want = model(x).logits.numpy()
    got = np.array(load_mlx(out)(mx.array(x.numpy())).astype(mx.float32))
    assert np.abs(got - want).max() <= 0.05  # 8-bit weights: close, not equal


def test_stock_mlx_lm_opens_an_mlp_pruned_folder(tmp_path):
    """Stock mlx-lm's loader builds a heads + MLP pruned folder through the model_file shim; logits agree."""
    from convert import convert_to_mlx
    from mlx_lm.utils import load_model as stock_load
    from runtime_mlx import load_model as load_mlx
    from runtime_mlx.stock import install_model_file

    model = tiny_model("qwen2")
    defrag(model, mlp_layout(model, heads_too=True))
    out = convert_to_mlx(save_model(model, tmp_path / "forged"), tmp_path / "mlx", dtype="float32")
    install_model_file(out)
    stock, _ = stock_load(out, trust_remote_code=True)
    assert type(stock).__module__ != type(load_mlx(out)).__module__ or stock.layers[0].mlp.up_proj.weight.shape[0] == 48
    x = mx.array(tokens().numpy())
    assert np.abs(np.array(stock(x)) - np.array(load_mlx(out)(x))).max() <= 1e-5
    with torch.no_grad():
        assert np.abs(np.array(stock(x)) - model(torch.from_numpy(np.array(x))).logits.numpy()).max() <= 1e-4


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_refit_reproduces_the_reader_output_better_than_dropping(family):
    """Least-squares refit: the pruned model's logits stay closer to the unpruned model's than plain removal."""
    model = tiny_model(family)
    x = [tokens(8, 16, seed=s) for s in range(3)]
    with torch.no_grad():
        want = model(x[0]).logits
    errors = {}
    for refit in (False, True):
        m = copy.deepcopy(model)
        prune_model(m, x, PruneOptions(criterion="activation", target_params=0.8, refit=refit), progress=False)
        with torch.no_grad():
            errors[refit] = (m(x[0]).logits - want).pow(2).mean().item()
    assert errors[True] < 0.7 * errors[False], errors


def test_refit_with_nothing_removed_changes_nothing():
    from forge_cuda.pruning.refit import collect_grams, refit_readers

    model = tiny_model("qwen2")
    layout = model_layout(model)
    assert refit_readers(model, collect_grams(model, [tokens(4, 16)]), layout, layout) == 0


def test_a_global_part_competes_with_the_layer_moves():
    """A global unit kind (e.g. vocabulary rows) is one more part of the space: no parallel search."""
    from forge_cuda.pruning.space import Move

    model = tiny_model("llama")
    layout = model_layout(model)
    scores = score_units(model, [tokens(4, 16)], "random", ("heads", "channels"))

    class Rows:  # 96 rows of 64 parameters, 10 per move, free to remove, at least 16 kept
        def __init__(self):
            self.removed, self.kept = {"rows": 0}, 96

        def moves(self, part, space):
            return [Move(part, "rows", 10 * 64, 0.0, 10)] if self.kept - 10 >= 16 else []

        def apply(self, move):
            self.kept -= move.units
            self.removed["rows"] += move.units

        def returnable(self, part):
            return None

        def write(self, layout, new):
            return new

    picked = greedy_search(layout, unit_costs(model), scores["heads"], scores["channels"], min_channels=10,
                           channel_group=channel_group_for(layout), extra=[Rows()]).select(100 * 64)
    assert picked.moves["rows"] == 8 and picked.units["rows"] == 80  # the free moves go first, all of them
    assert picked.removed >= 100 * 64 and picked.moves["channels"] + picked.moves["query"] + picked.moves["group"] > 0
