"""Every family: reversible masks == defrag == save/load, and parameters drop exactly as the layout says."""

import copy
import json

import pytest
import torch

from forge_cuda.checkpoint import load_model, param_count, save_model
from forge_cuda.pruning.defrag import defrag, model_layout
from forge_cuda.families import family_for
from head_gates import HeadGates
from sentinel.errors import LayoutError, SentinelError
from sentinel.layout import LayerHeads
from tiny import tiny_model, tokens

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "qwen3_5_text"]


def target_layout(model):
    """Layer-irregular pruning: query heads inside groups, a whole KV group, and an untouched layer."""
    layout = model_layout(model)
    family = family_for(model.config.model_type)
    first, *rest = family.attention_layers(model)
    if layout.base.group_size == 1:  # gpt2: multi-head attention, a query head goes with its KV head
        layout = layout.replace_layer(first, LayerHeads((0, 2, 3), (0, 2, 3)))
    else:  # 8 query heads over 4 KV heads
        layout = layout.replace_layer(first, LayerHeads((1, 3, 5, 7), (0, 1, 2, 3)))
        if not rest:  # qwen3_5: one full-attention layer
            return layout.replace_layer(first, LayerHeads((0, 1, 6, 7), (0, 3)))
    return layout.replace_layer(rest[0], LayerHeads((1,) if layout.base.group_size == 1 else (2, 3),
                                                    (1,)))


def manual_mask(model, layout):
    """Independent of HeadGates: zero the removed heads' o_proj input weights in a copy."""
    masked = copy.deepcopy(model)
    family = family_for(model.config.model_type)
    hd = layout.base.head_dim
    for i in family.attention_layers(masked):
        o = family.o_proj(family.attention(masked, i))
        gpt2 = model.config.model_type == "gpt2"  # Conv1D weight is [in, out]
        for h in set(range(layout.base.num_heads)) - set(layout.layers[i].q_heads):
            with torch.no_grad():
                (o.weight[h * hd:(h + 1) * hd] if gpt2 else o.weight[:, h * hd:(h + 1) * hd]).zero_()
    return masked


def expected_drop(model, layout) -> int:
    """Parameters the layout removes, from shapes alone."""
    cfg, base = model.config, layout.base
    hd, hidden = base.head_dim, base.hidden_size
    family = family_for(cfg.model_type)
    bias = 1 if cfg.model_type in ("qwen2", "gpt2") else 0
    drop = 0
    for layer in layout.layers:
        dq, dkv = base.num_heads - layer.num_heads, base.num_kv_heads - layer.num_kv_heads
        drop += dq * hd * family.q_blocks * (hidden + bias) + 2 * dkv * hd * (hidden + bias) + dq * hd * hidden
    return drop


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_equals_defragged_equals_reloaded(family, tmp_path):
    model = tiny_model(family)
    layout = target_layout(model)
    x = tokens()
    with torch.no_grad():
        full = model(x).logits
        independent = manual_mask(model, layout)(x).logits
    gates = HeadGates(model)
    gates.mask_to(layout)
    with torch.no_grad():
        masked = model(x).logits
    assert (masked - independent).abs().max().item() <= 1e-5
    assert (masked - full).abs().max().item() > 1e-3  # the masks really change the model
    before = param_count(model)
    assert gates.commit() == layout
    with torch.no_grad():
        assert (model(x).logits - masked).abs().max().item() <= 1e-5
    assert before - param_count(model) == expected_drop(model, layout) > 0
    save_model(model, tmp_path / "forged")
    loaded = load_model(tmp_path / "forged", attn_implementation="eager")
    assert model_layout(loaded) == layout
    assert param_count(loaded) == param_count(model)
    with torch.no_grad():
        assert (loaded(x).logits - masked).abs().max().item() <= 1e-5
        out = loaded.generate(x[:1, :4], max_new_tokens=3, do_sample=False)  # KV cache with irregular heads
    assert out.shape == (1, 7)


def test_revive_restores_the_model_exactly():
    model = tiny_model("llama")
    x = tokens()
    with torch.no_grad():
        full = model(x).logits
    with HeadGates(model) as gates:
        gates.mask(0, [0, 5])
        with torch.no_grad():
            assert not torch.equal(model(x).logits, full)
        gates.revive(0, [0, 5])
        with torch.no_grad():
            assert torch.equal(model(x).logits, full)
        gates.mask(1, [2])
    with torch.no_grad():  # leaving the context removes the hooks
        assert torch.equal(model(x).logits, full)


def test_commit_refuses_masks_that_break_equal_group_sizes():
    model = tiny_model("llama")
    gates = HeadGates(model)
    gates.mask(0, [0])  # KV group 0 would keep 1 query head, the others 2
    with pytest.raises(LayoutError, match="layer 0: 7 query heads is not a multiple of 4 KV heads"):
        gates.commit()
    gates.mask(0, [2, 4, 6])
    assert gates.masked_layout().layers[0].q_heads == (1, 3, 5, 7)
    assert gates.commit().layers[0] == LayerHeads((1, 3, 5, 7), (0, 1, 2, 3))
    assert model.model.layers[0].self_attn.q_proj.out_features == 4 * 16


def test_whole_group_masked_drops_its_kv_head():
    model = tiny_model("qwen3")
    gates = HeadGates(model)
    gates.mask(2, [2, 3])
    assert gates.commit().layers[2] == LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))
    assert model.model.layers[2].self_attn.k_proj.out_features == 3 * 16


def test_qwen3_5_linear_attention_layers_stay_intact():
    model = tiny_model("qwen3_5_text")
    family = family_for("qwen3_5_text")
    assert family.attention_layers(model) == [3]
    layout = model_layout(model)
    with pytest.raises(LayoutError, match="layer 0 has no prunable attention heads"):
        defrag(model, layout.replace_layer(0, LayerHeads((0, 1), (0,))))
    # the gated q_proj keeps query+gate rows per head
    defrag(model, layout.replace_layer(3, LayerHeads((0, 1), (0,))))
    assert model.model.layers[3].self_attn.q_proj.out_features == 2 * 2 * 16


def test_qwen3_5_checkpoint_pruning_a_linear_layer_is_rejected(tmp_path):
    model = tiny_model("qwen3_5_text")
    save_model(model, tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    layers = [{"q_heads": list(range(8)), "kv_heads": list(range(4))} for _ in range(4)]
    layers[1] = {"q_heads": [0, 1], "kv_heads": [0]}
    cfg["sentinel_layout"] = {"format_version": 1, "layers": layers}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(LayoutError, match="layer 1 has no prunable attention heads, but the layout prunes it"):
        load_model(tmp_path / "m")


def test_gpt2_cannot_split_query_and_kv_heads():
    model = tiny_model("gpt2")
    with pytest.raises(SentinelError, match="gpt2 keeps query and KV heads together"):
        family_for("gpt2").select(model.transformer.h[0].attn, [0, 1], [0])


def test_unsupported_family_names_the_supported_ones():
    with pytest.raises(SentinelError, match=r"unsupported model_type 'bert'; supported: gpt2, llama, mistral, "
                                            r"qwen2, qwen3, qwen3_5, qwen3_5_text"):
        family_for("bert")
