"""The layout contract: every rule of docs/FORMAT.md has a test that breaks it."""

import pytest

from sentinel.errors import LayoutError
from sentinel.layout import (FORMAT_VERSION, LAYOUT_KEY, AttentionShape, HeadLayout, LayerHeads,
                             attention_shape, read_layout, write_layout)

BASE = AttentionShape(num_layers=3, num_heads=8, num_kv_heads=4, head_dim=16, hidden_size=64,
                      intermediate_size=96)
CONFIG = dict(num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4, head_dim=16,
              hidden_size=64, intermediate_size=96, model_type="llama")


def layout_with(layer_1: dict) -> dict:
    full = HeadLayout.full(BASE).to_dict()
    full["layers"][1] = layer_1
    return dict(CONFIG, **{LAYOUT_KEY: full})


def test_full_layout_when_config_has_none():
    layout = read_layout(CONFIG)
    assert layout.q_counts == [8, 8, 8] and layout.kv_counts == [4, 4, 4]
    assert layout == HeadLayout.full(BASE)


def test_round_trip_through_config_dict():
    layout = HeadLayout.full(BASE).replace_layer(1, LayerHeads((2, 3, 6, 7), (1, 3)))
    cfg = write_layout(dict(CONFIG), layout)
    assert cfg[LAYOUT_KEY]["format_version"] == FORMAT_VERSION
    back = read_layout(cfg)
    assert back == layout
    assert back.q_counts == [8, 4, 8] and back.kv_counts == [4, 2, 4]


def test_clones_and_mlp_channels_round_trip():
    layer = LayerHeads((0, 8, 2, 3), (0, 1), clone_of={8: 0}, mlp_channels=(0, 5, 95))
    cfg = write_layout(dict(CONFIG), HeadLayout.full(BASE).replace_layer(1, layer))
    assert read_layout(cfg).layers[1] == layer


def test_gpt2_style_keys_are_understood():
    shape = attention_shape({"n_layer": 2, "n_head": 4, "n_embd": 64})
    assert (shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim) == (2, 4, 4, 16)


@pytest.mark.parametrize("layer, message", [
    ({"q_heads": [0, 1, 2, 3], "kv_heads": [0, 1, 2]}, "KV head 2 is kept but none of its query heads are"),
    ({"q_heads": [0, 1, 2], "kv_heads": [0, 1]}, "3 query heads is not a multiple of 2 KV heads"),
    ({"q_heads": [0, 2, 3, 5], "kv_heads": [0, 1, 2]}, "not a multiple"),
    ({"q_heads": [0, 1, 9, 8], "kv_heads": [0, 4]}, "out of range"),
    ({"q_heads": [0, 1, 2, 3], "kv_heads": [0, 1, 2, 3, 4]}, "KV head 4 is out of range 0..3"),
    ({"q_heads": [0, 0, 2, 3], "kv_heads": [0, 1]}, "q_heads lists head 0 more than once"),
    ({"q_heads": [0, 1], "kv_heads": [0, 0]}, "kv_heads lists head 0 more than once"),
    ({"q_heads": [0, 1, 2, 3], "kv_heads": [0]}, "query head 2 belongs to KV head 1, which is not kept"),
    ({"q_heads": [0, 8, 9, 2], "kv_heads": [0, 1], "clone_of": {"8": 0, "9": 1}}, "unequal query counts"),
    ({"q_heads": [2, 3, 0, 1], "kv_heads": [0, 1]}, "group by group in kv_heads order"),
    ({"q_heads": [], "kv_heads": []}, "keeps no attention heads"),
    ({"q_heads": [0, 1, 8, 3], "kv_heads": [0, 1], "clone_of": {"8": 12}}, "parent 12"),
    ({"q_heads": [0, 1], "kv_heads": [0], "clone_of": {"1": 0}}, "collides with an original head"),
    ({"q_heads": list(range(8)), "kv_heads": list(range(4)), "mlp_channels": [3, 1]}, "strictly ascending"),
    ({"q_heads": list(range(8)), "kv_heads": list(range(4)), "mlp_channels": [0, 96]}, "out of range 0..95"),
    ({"q_heads": [0, 1]}, "malformed entry"),
])
def test_invalid_layer_is_rejected_naming_the_layer(layer, message):
    with pytest.raises(LayoutError, match="layer 1: ") as err:
        read_layout(layout_with(layer))
    assert message in str(err.value)


def test_missing_layer_is_rejected():
    cfg = write_layout(dict(CONFIG), HeadLayout.full(BASE))
    cfg[LAYOUT_KEY]["layers"].pop()
    with pytest.raises(LayoutError, match="lists 2 layers but the model has 3"):
        read_layout(cfg)


def test_unsupported_format_version_is_rejected():
    cfg = write_layout(dict(CONFIG), HeadLayout.full(BASE))
    cfg[LAYOUT_KEY]["format_version"] = 4
    with pytest.raises(LayoutError, match="unsupported sentinel_layout format_version 4"):
        read_layout(cfg)


def test_version_1_blocks_still_read():
    """Folders written before MLP pruning (format v1) load unchanged."""
    layout = HeadLayout.full(BASE).replace_layer(1, LayerHeads((0, 1, 4, 5), (0, 2)))
    cfg = write_layout(dict(CONFIG), layout)
    cfg[LAYOUT_KEY]["format_version"] = 1
    assert read_layout(cfg) == layout


def test_mlp_widths_follow_kept_channels():
    layer = HeadLayout.full(BASE).layers[0]
    layout = HeadLayout.full(BASE).replace_layer(2, LayerHeads(layer.q_heads, layer.kv_heads, mlp_channels=(1, 5, 9)))
    again = read_layout(write_layout(dict(CONFIG), layout))
    assert again.mlp_widths == [BASE.intermediate_size, BASE.intermediate_size, 3]
    assert again.channels(2) == (1, 5, 9) and len(again.channels(0)) == BASE.intermediate_size


def test_base_counts_must_match_config():
    cfg = write_layout(dict(CONFIG), HeadLayout.full(BASE))
    cfg[LAYOUT_KEY]["base_num_attention_heads"] = 16
    with pytest.raises(LayoutError, match="base_num_attention_heads=16 disagrees"):
        read_layout(cfg)


def test_layout_module_imports_without_torch_or_mlx():
    import subprocess
    import sys

    code = ("import sys; import sentinel.layout, sentinel.cli.resolve, sentinel.cli; "
            "bad = [m for m in ('torch', 'mlx', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
