"""Torch side of the contract: slice heads -> save -> load gives the masked model's logits."""

import copy
import json

import pytest
import torch

from forge_cuda.checkpoint import load_model, param_count, save_model
from forge_cuda.pruning.defrag import defrag, model_layout
from sentinel.errors import LayoutError, SentinelError
from sentinel.layout import LayerHeads
from tiny import pruned_layout, tiny_model, tokens

FAMILIES = ["llama", "qwen2", "qwen3"]

def masked_copy(model, layout):
    """The original model with removed heads silenced: their o_proj input columns zeroed."""
    masked = copy.deepcopy(model)
    hd = layout.base.head_dim
    for i, layer in enumerate(layout.layers):
        o = masked.model.layers[i].self_attn.o_proj
        for h in set(range(layout.base.num_heads)) - set(layer.q_heads):
            with torch.no_grad():
                o.weight[:, h * hd:(h + 1) * hd] = 0
    return masked


def expected_params(model, layout) -> int:
    """Parameter count from the layout alone: the base model minus the removed heads' rows/cols."""
    cfg, hd, hidden = model.config, layout.base.head_dim, layout.base.hidden_size
    qkv_bias = 1 if cfg.model_type == "qwen2" else 0
    full = sum(p.numel() for p in tiny_model(cfg.model_type).parameters())
    removed = 0
    for layer in layout.layers:
        dq = layout.base.num_heads - layer.num_heads
        dkv = layout.base.num_kv_heads - layer.num_kv_heads
        removed += dq * hd * (hidden + qkv_bias) + 2 * dkv * hd * (hidden + qkv_bias) + dq * hd * hidden
    return full - removed


@pytest.mark.parametrize("family", FAMILIES)
def test_slice_save_load_matches_masked_model(family, tmp_path):
    model = tiny_model(family)
    layout = pruned_layout(model)
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
    assert loaded.model.layers[1].self_attn.k_proj.out_features == 3 * 16
    assert param_count(loaded) == expected_params(model, layout) == param_count(model)
    assert param_count(loaded) < param_count(reference)


@pytest.mark.parametrize("family", FAMILIES)
def test_unpruned_folder_loads_like_transformers(family, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model(family)
    model.save_pretrained(tmp_path / "plain")
    ours = load_model(tmp_path / "plain", attn_implementation="eager")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "plain", attn_implementation="eager").eval()
    x = tokens()
    with torch.no_grad():
        assert torch.equal(ours(x).logits, theirs(x).logits)


def test_saved_folder_is_safetensors_with_layout_and_tokenizer_files(tmp_path):
    model = tiny_model("llama")
    defrag(model, pruned_layout(model))
    save_model(model, tmp_path / "forged", max_shard_size="100KB")
    files = sorted(p.name for p in (tmp_path / "forged").iterdir())
    assert "model.safetensors.index.json" in files
    assert sum(f.endswith(".safetensors") for f in files) > 1
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    cfg = json.loads((tmp_path / "forged" / "config.json").read_text())
    assert cfg["sentinel_layout"]["layers"][1]["kv_heads"] == [0, 2, 3]
    # pruned shapes: the folder names its own classes (stock transformers asks for trust_remote_code)
    assert cfg["model_type"] == "sentinel_llama" and cfg["num_attention_heads"] == 8
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_sentinel.SentinelLlamaForCausalLM"
    assert "modeling_sentinel.py" in files
    assert load_model(tmp_path / "forged").model.layers[0].self_attn.q_proj.out_features == 4 * 16


def test_shape_disagreeing_with_layout_is_a_clear_error(tmp_path):
    model = tiny_model("llama")
    defrag(model, pruned_layout(model))
    save_model(model, tmp_path / "forged")
    cfg_path = tmp_path / "forged" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["sentinel_layout"]["layers"][0] = {"q_heads": list(range(8)), "kv_heads": list(range(4))}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(LayoutError, match=r"tensor model.layers.0.self_attn.[qo]_proj.weight has shape \(64, 64\), the layout in config.json expects"):
        load_model(tmp_path / "forged")


def test_unsupported_family_lists_supported_ones(tmp_path):
    cfg = {"model_type": "bert", "num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 8}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SentinelError, match="unsupported model_type 'bert'; supported: .*llama.*qwen3"):
        load_model(tmp_path)


def test_save_refuses_existing_output_and_leaves_it_intact(tmp_path):
    out = tmp_path / "forged"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SentinelError, match="already exists"):
        save_model(tiny_model("llama"), out)
    assert (out / "keep.txt").read_text() == "mine"


def test_defrag_cannot_revive_removed_heads():
    model = tiny_model("llama")
    layout = pruned_layout(model)
    defrag(model, layout)
    with pytest.raises(LayoutError, match="layer 0: head 1 was already removed"):
        defrag(model, layout.replace_layer(0, LayerHeads(tuple(range(8)), tuple(range(4)))))


@pytest.mark.slow
def test_real_model_loads_like_transformers(real_model):
    from transformers import AutoModelForCausalLM

    ours = load_model(real_model)
    theirs = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32).eval()
    x = torch.tensor([[1, 504, 3458, 314, 260, 4183, 282]])
    with torch.no_grad():
        assert torch.equal(ours(x).logits, theirs(x).logits)
    assert param_count(ours) == 134_515_008
