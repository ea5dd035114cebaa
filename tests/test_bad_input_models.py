"""`models pull` / `models list` with a damaged cache, a read-only or file SENTINEL_HOME, a full disk.

The embedded name ``smollm2-135m`` is pointed at a tiny qwen2 GGUF in local wheels (test_models_pull's
fixture), so a pull runs the real path (wheels, SHA-256, dequantization) in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bad_input import assert_error, assert_unchanged, cli, snapshot, tmpfs
from sentinel.cli import resolve as models_mod
from test_models_pull import tiny_split  # noqa: F401  (fixture)
from test_models_wheels import local_index  # noqa: F401  (fixture)

NAME = "smollm2-135m"


@pytest.fixture()
def embedded(tiny_split, monkeypatch):  # noqa: F811
    monkeypatch.setitem(models_mod.EMBEDDED, NAME, models_mod.EMBEDDED["tiny-qwen"])
    return NAME


def _no_dequantize(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("dequantized before the cache was checked")
    monkeypatch.setattr(models_mod, "dequantize_gguf", boom)
    monkeypatch.setattr(models_mod, "gguf_path", boom)


def _home(tmp_path) -> Path:
    return Path(__import__("os").environ["SENTINEL_HOME"])


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\"text\""])
def test_pull_with_a_damaged_cached_config(tmp_path, embedded, monkeypatch, content):
    folder = _home(tmp_path) / "models" / NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(content)
    _no_dequantize(monkeypatch)
    before = snapshot(tmp_path)
    assert_error(cli("models", "pull", NAME), "damaged", "--force")
    assert_unchanged(before, tmp_path)


def test_list_with_a_damaged_cached_config_lists_the_rest(tmp_path, embedded):
    assert cli("models", "pull", NAME).exit_code == 0
    broken = _home(tmp_path) / "models" / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    listed = _home(tmp_path) / "models" / "listed-source"
    listed.mkdir()
    (listed / "config.json").write_text(json.dumps({"model_type": ["x"]}))
    before = snapshot(tmp_path)
    result = cli("models", "list")
    line = assert_error(result, "broken", "damaged")
    assert NAME in result.output and "listed-source" not in line
    assert_unchanged(before, tmp_path)


def test_list_with_a_source_json_list(tmp_path, embedded):
    assert cli("models", "pull", NAME).exit_code == 0
    (_home(tmp_path) / "models" / NAME / "SOURCE.json").write_text("[]")
    result = cli("models", "list")
    assert result.exit_code == 0 and NAME in result.output, result.output


def test_pull_into_a_file_home(tmp_path, embedded, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("x")
    _no_dequantize(monkeypatch)
    before = snapshot(tmp_path)
    assert_error(cli("models", "pull", NAME, env={"SENTINEL_HOME": str(home)}), "is a file", str(home))
    assert_unchanged(before, tmp_path)


def test_pull_into_a_read_only_home_in_process(tmp_path, embedded, monkeypatch):
    import sentinel.atomic as atomic

    home = _home(tmp_path)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(atomic, "_read_only", lambda folder: Path(folder) == home)
    _no_dequantize(monkeypatch)
    before = snapshot(tmp_path)
    assert_error(cli("models", "pull", NAME), "read-only folder", str(home))
    assert_unchanged(before, tmp_path)


def test_pull_into_a_read_only_mounted_home(tmp_path, embedded, monkeypatch):
    home = tmp_path / "ro-home"
    _no_dequantize(monkeypatch)
    with tmpfs(home, size="1m", read_only=True):
        assert_error(cli("models", "pull", NAME, env={"SENTINEL_HOME": str(home)}), "read-only folder")


def test_pull_onto_a_full_disk(tmp_path, embedded):
    assert cli("models", "pull", NAME).exit_code == 0  # caches the verified GGUF in this SENTINEL_HOME
    gguf = models_mod.gguf_dir() / "tiny-qwen.gguf"
    with tmpfs(tmp_path / "small", size="256k") as small:
        (small / "gguf").mkdir()
        (small / "gguf" / "tiny-qwen.gguf").symlink_to(gguf)
        before = snapshot(small)
        line = assert_error(cli("models", "pull", NAME, env={"SENTINEL_HOME": str(small)}),
                            "no space left on device")
        assert str(small / "models" / NAME) in line
        assert_unchanged(before, small)


def test_pull_onto_a_full_disk_while_joining_chunks(tmp_path, embedded, monkeypatch):
    import sentinel.cli.wheels as wheels

    real = wheels.download_wheels
    with tmpfs(tmp_path / "small", size="256k") as small:
        # the wheels land beside the target on the small disk too; keep them elsewhere so the join fills it
        monkeypatch.setattr(wheels, "download_wheels", lambda reqs, dest: real(reqs, tmp_path / "wheels"))
        before = snapshot(small)
        line = assert_error(cli("models", "pull", NAME, env={"SENTINEL_HOME": str(small)}),
                            "no space left on device")
        assert "tiny-qwen.gguf" in line
        assert_unchanged(before, small)
