"""FORMAT v3: a trimmed vocabulary and [start, stop) ranges in the layout; v1/v2 blocks still read."""

import json

import pytest

from sentinel.errors import LayoutError
from sentinel.layout import LAYOUT_KEY, HeadLayout, LayerHeads, read_layout, write_layout
from sentinel.ranges import to_ranges
from test_layout import BASE, CONFIG

FULL = HeadLayout.full(BASE)
KEPT = tuple(range(0, 40)) + (45, 46, 47) + tuple(range(60, 200))


def trimmed_config(layout=None, vocab=KEPT, base_vocab=200, **extra):
    layout = (layout or FULL).with_vocab(vocab, base_vocab)
    return write_layout(dict(CONFIG, vocab_size=len(vocab), **extra), layout)


def test_ranges_merge_runs():
    assert to_ranges([0, 1, 2, 5, 7, 8]) == [[0, 3], [5, 6], [7, 9]]
    assert to_ranges([]) == []


def test_vocab_ids_round_trip_as_ranges():
    layer = LayerHeads((0, 2, 4, 6), (0, 1, 2, 3), mlp_channels=tuple(range(0, 32)) + tuple(range(64, 96)))
    cfg = trimmed_config(FULL.replace_layer(0, layer))
    block = cfg[LAYOUT_KEY]
    assert block["format_version"] == 3 and block["base_vocab_size"] == 200
    assert block["vocab_ids"] == [[0, 40], [45, 48], [60, 200]]
    assert block["layers"][0]["mlp_channels"] == [[0, 32], [64, 96]]
    back = read_layout(json.loads(json.dumps(cfg)))
    assert back.vocab_ids == KEPT and back.base_vocab_size == 200
    assert back.layers[0] == layer and back == FULL.replace_layer(0, layer).with_vocab(KEPT, 200)
    assert "183/200 tokens kept" in back.summary()


def test_plain_int_lists_are_read_in_v3_too():
    cfg = trimmed_config()
    cfg[LAYOUT_KEY]["vocab_ids"] = list(KEPT)
    cfg[LAYOUT_KEY]["layers"][1]["mlp_channels"] = [1, 5, 9]
    back = read_layout(cfg)
    assert back.vocab_ids == KEPT and back.channels(1) == (1, 5, 9)


def test_replace_layer_keeps_the_vocabulary():
    layout = FULL.with_vocab(KEPT, 200).replace_layer(1, LayerHeads((0, 1, 4, 5), (0, 2)))
    assert layout.vocab_ids == KEPT and layout.base_vocab_size == 200


@pytest.mark.parametrize("vocab, base_vocab, message", [
    ([[0, 10], [5, 20]], 200, "ascending and disjoint"),
    ([[10, 5]], 200, "empty or reversed"),
    ([[0, 10], 12], 200, "not a mix"),
    ([[0, 10, 12]], 200, "not a [start, stop) pair"),
    ([[0, 150], [190, 250]], 200, "out of range 0..199"),
    ([3, 1, 2], 200, "strictly ascending"),
    ([[0, 183]], None, "both vocab_ids and base_vocab_size"),
])
def test_broken_vocab_ids_are_rejected(vocab, base_vocab, message):
    cfg = trimmed_config()
    cfg[LAYOUT_KEY]["vocab_ids"] = vocab
    cfg[LAYOUT_KEY]["base_vocab_size"] = base_vocab
    with pytest.raises(LayoutError, match="vocab") as err:
        read_layout(cfg)
    assert message in str(err.value)


def test_vocab_size_must_equal_kept_rows():
    cfg = trimmed_config()
    cfg["vocab_size"] = 200
    with pytest.raises(LayoutError, match="keeps 183 vocab_ids but config.json has vocab_size=200"):
        read_layout(cfg)
    with pytest.raises(LayoutError, match="vocab_size=200"):
        write_layout(dict(CONFIG, vocab_size=200), FULL.with_vocab(KEPT, 200))


@pytest.mark.parametrize("key, value", [("eos_token_id", 183), ("bos_token_id", [0, 500]), ("pad_token_id", -1)])
def test_special_ids_must_lie_in_the_kept_rows(key, value):
    cfg = trimmed_config()
    cfg[key] = value
    with pytest.raises(LayoutError, match=f"{key}=.* is outside the kept vocabulary 0..182"):
        read_layout(cfg)


def test_ranges_and_vocab_need_version_3():
    layer = LayerHeads(tuple(range(8)), tuple(range(4)), mlp_channels=tuple(range(10, 90)))
    cfg = trimmed_config(FULL.replace_layer(2, layer))
    cfg[LAYOUT_KEY]["format_version"] = 2
    with pytest.raises(LayoutError, match="layer 2: mlp_channels is stored as .* need format_version 3"):
        read_layout(cfg)
    cfg[LAYOUT_KEY]["layers"][2]["mlp_channels"] = list(range(10, 90))
    with pytest.raises(LayoutError, match="format_version 2 cannot trim the vocabulary"):
        read_layout(cfg)


@pytest.mark.parametrize("version", [1, 2])
def test_old_blocks_with_int_lists_still_read(version):
    layer = LayerHeads((0, 1, 4, 5), (0, 2), mlp_channels=(1, 5, 9) if version == 2 else None)
    block = FULL.replace_layer(1, layer).to_dict()
    block["format_version"] = version
    if version == 2:
        block["layers"][1]["mlp_channels"] = [1, 5, 9]
    back = read_layout(dict(CONFIG, **{LAYOUT_KEY: block}))
    assert back.layers[1] == layer and back.vocab_ids is None


def test_scattered_vocab_is_written_as_a_bitmap():
    scattered = tuple(range(0, 2000, 3))
    cfg = trimmed_config(vocab=scattered, base_vocab=2000)
    stored = cfg[LAYOUT_KEY]["vocab_ids"]
    assert set(stored) == {"bitmap", "size"} and stored["size"] == 2000
    assert len(json.dumps(stored)) < 400  # 2000 bits = 250 bytes of base64-encoded bitmap
    assert read_layout(json.loads(json.dumps(cfg))).vocab_ids == scattered


@pytest.mark.parametrize("bitmap, message", [
    ({"bitmap": "!!", "size": 200}, "not valid base64"),
    ({"bitmap": "AAAA", "size": 200}, "holds 3 bytes, size 200 needs 25"),
    ({"bitmap": "/w==", "size": 4}, "sets bits at or beyond size 4"),
    ({"bits": "AA==", "size": 8}, "a bitmap is"),
])
def test_broken_bitmaps_are_rejected(bitmap, message):
    cfg = trimmed_config()
    cfg[LAYOUT_KEY]["vocab_ids"] = bitmap
    with pytest.raises(LayoutError, match="vocab_ids") as err:
        read_layout(cfg)
    assert message in str(err.value)
