"""`convert X --to mlx` with bad config values, tokenizer files and output paths: one `error:` line before
anything is created, nothing new on disk, every pre-existing file byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bad_input import assert_error, assert_unchanged, cli, plain_checkpoint, read_only_copy, snapshot, tmpfs

pytest.importorskip("mlx.core")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return plain_checkpoint(tmp_path_factory.mktemp("mlx-src") / "tiny")


@pytest.fixture()
def ckpt(tmp_path, base):
    folder = tmp_path / "src" / "tiny"
    shutil.copytree(base, folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


CASES = {
    "heads nine": ({"num_attention_heads": "nine"}, "num_attention_heads"),
    "heads zero": ({"num_attention_heads": 0}, "num_attention_heads"),
    "heads float": ({"num_attention_heads": 8.0}, "num_attention_heads"),
    "kv heads zero": ({"num_key_value_heads": 0}, "num_key_value_heads"),
    "kv heads not dividing": ({"num_key_value_heads": 3}, "not a multiple"),
    "layers 2**40": ({"num_hidden_layers": 2**40}, "num_hidden_layers"),
    "rope_scaling string": ({"rope_scaling": "linear"}, "rope_scaling"),
    "rms_norm_eps string": ({"rms_norm_eps": "1e-6"}, "rms_norm_eps"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_values(tmp_path, ckpt, case):
    changes, fragment = CASES[case]
    edit_config(ckpt, **changes)
    before = snapshot(tmp_path)
    assert_error(cli("convert", ckpt, "--out", tmp_path / "new" / "out"), fragment, "config.json")
    assert_unchanged(before, tmp_path)


def test_broken_tokenizer_config(tmp_path, ckpt):
    (ckpt / "tokenizer_config.json").write_text("{")
    before = snapshot(tmp_path)
    assert_error(cli("convert", ckpt, "--out", tmp_path / "out"), "tokenizer_config.json", "not valid JSON")
    assert_unchanged(before, tmp_path)


def test_output_paths(tmp_path, ckpt):
    (tmp_path / "file").write_text("x")
    home = tmp_path / "home-file"
    home.write_text("x")
    before = snapshot(tmp_path)
    assert_error(cli("convert", ckpt, "--out", tmp_path / "file" / "out"), "is a file")
    assert_error(cli("convert", ckpt, env={"SENTINEL_HOME": str(home)}), "is a file")
    assert_unchanged(before, tmp_path)


def test_read_only_in_process(tmp_path, ckpt, monkeypatch):
    import sentinel.atomic as atomic

    target = tmp_path / "ro"
    target.mkdir()
    monkeypatch.setattr(atomic, "_read_only", lambda folder: Path(folder) == target)
    before = snapshot(tmp_path)
    assert_error(cli("convert", ckpt, "--out", target / "out"), "read-only folder", str(target))
    assert_unchanged(before, tmp_path)


def test_read_only_mounted_home(tmp_path, ckpt):
    home = tmp_path / "home"
    home.mkdir()
    before = snapshot(tmp_path)
    with read_only_copy(home):
        assert_error(cli("convert", ckpt, env={"SENTINEL_HOME": str(home)}), "read-only folder", str(home))
    assert_unchanged(before, tmp_path)


def test_disk_full_on_a_real_tmpfs(tmp_path, ckpt):
    with tmpfs(tmp_path / "small", size="64k") as small:
        before = snapshot(small)
        line = assert_error(cli("convert", ckpt, "--out", small / "out"), "no space left on device")
        assert str(small / "out") in line
        assert_unchanged(before, small)


@pytest.mark.parametrize("weight_map,fragment", [
    ({"x": 5}, "shard 5 is not a file name"),
    ({"x": "../../etc/passwd"}, "is not a file name"),
    ({"x": "sub/model.safetensors"}, "is not a file name"),
])
def test_index_naming_no_file_of_the_folder(tmp_path, ckpt, weight_map, fragment):
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    before = snapshot(tmp_path)
    for extra in ((), ("--to", "gguf", "--out", str(tmp_path / "m.gguf"))):
        args = ("convert", ckpt, *extra) if extra else ("convert", ckpt, "--out", tmp_path / "out")
        assert_error(cli(*args), "model.safetensors.index.json", fragment)
    assert_unchanged(before, tmp_path)


def test_group_size_without_quantize(tmp_path, ckpt):
    before = snapshot(tmp_path)
    assert_error(cli("convert", ckpt, "--group-size", "32", "--out", tmp_path / "out"), "--group-size applies with")
    assert_unchanged(before, tmp_path)
