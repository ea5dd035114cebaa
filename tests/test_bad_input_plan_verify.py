"""`plan` on folders whose weights disagree with config/layout (or are absent), `plan --target ,`, and
`verify --out FILE` / `--out FILE/sub` refused before anything is measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bad_input import assert_error, assert_unchanged, cli, plain_checkpoint, snapshot


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return plain_checkpoint(tmp_path_factory.mktemp("plan-src") / "tiny")


@pytest.fixture()
def folder(tmp_path, base):
    out = tmp_path / "m" / "tiny"
    shutil.copytree(base, out)
    return out


def _config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _tensors(folder: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors = edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _layout_claims_pruned(folder: Path) -> None:
    from sentinel.layout import HeadLayout, LayerHeads, read_layout, write_layout

    cfg = json.loads((folder / "config.json").read_text())
    full = read_layout(cfg)
    layers = (LayerHeads((0, 1, 2, 3), (0, 1)),) + full.layers[1:]
    (folder / "config.json").write_text(json.dumps(write_layout(cfg, HeadLayout(full.base, layers))))


def _weights_pruned(folder: Path) -> None:
    def cut(t):
        t["model.layers.1.self_attn.q_proj.weight"] = t["model.layers.1.self_attn.q_proj.weight"][:64].copy()
        t["model.layers.1.self_attn.o_proj.weight"] = t["model.layers.1.self_attn.o_proj.weight"][:, :64].copy()
        return t
    _tensors(folder, cut)


def _other_names(folder: Path) -> None:
    # Meta's original checkpoint naming (layers.N.attention.wq...): not a transformers layout at all
    _tensors(folder, lambda t: {n.replace("model.layers.", "blocks.").replace("self_attn.", "attention."): v
                                for n, v in t.items()})


def _drop_mlp_rows(folder: Path) -> None:
    def cut(t):
        for part in ("gate_proj", "up_proj"):
            t[f"model.layers.2.mlp.{part}.weight"] = t[f"model.layers.2.mlp.{part}.weight"][:48].copy()
        return t
    _tensors(folder, cut)


CASES = {
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "has no safetensors weights"),
    "config has more layers": (lambda f: _config(f, num_hidden_layers=4), "no tensor of layer 3"),
    "config has fewer layers": (lambda f: _config(f, num_hidden_layers=2), "is for layer 2"),
    "layout pruned, weights full": (_layout_claims_pruned, "model.layers.0.self_attn."),
    "weights pruned, config full": (_weights_pruned, "model.layers.1.self_attn."),
    "kv heads disagree": (lambda f: _config(f, num_key_value_heads=2), "k_proj.weight"),
    "mlp width disagrees": (lambda f: _config(f, intermediate_size=64), "mlp."),
    "one layer's mlp rows cut": (_drop_mlp_rows, "model.layers.2.mlp.gate_proj.weight"),
    "vocab disagrees": (lambda f: _config(f, vocab_size=300), "imply 300 along dimension 0"),
    "hidden disagrees": (lambda f: _config(f, hidden_size=256, head_dim=16), "has shape"),
    "weights of another model": (_other_names, "no tensor of layer 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_refuses_weights_that_disagree(tmp_path, folder, case):
    damage, fragment = CASES[case]
    damage(folder)
    before = snapshot(tmp_path)
    assert_error(cli("plan", folder), fragment)
    assert_unchanged(before, tmp_path)


def test_plan_accepts_good_folders_and_a_bare_config(folder):
    assert cli("plan", folder, "--json").exit_code == 0
    (folder / "model.safetensors").unlink()
    result = cli("plan", folder / "config.json", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["facts"]["source"] == "config.json"


def test_plan_checks_a_quantized_mlx_folder(tmp_path, folder):
    pytest.importorskip("mlx.core")
    from convert import convert_to_mlx

    mlx = convert_to_mlx(folder, tmp_path / "q4", quantize=4, group_size=32)
    assert cli("plan", mlx, "--json").exit_code == 0
    _config(mlx, num_key_value_heads=2)
    assert_error(cli("plan", mlx), "k_proj.weight")


def test_plan_of_a_gguf_file(tmp_path):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x80" * 64)
    assert_error(cli("plan", fake), "is a GGUF file", "sentinel verify")


@pytest.mark.parametrize("target", [",", " , ", ""])
def test_plan_target_naming_nothing(folder, target):
    assert_error(cli("plan", folder, "--target", target), "names no target")


def _refuse_measuring(monkeypatch):
    import subprocess

    import runtime_mlx.verify as mlx_verify

    def boom(*args, **kwargs):
        raise AssertionError("measured before checking --out")

    monkeypatch.setattr(mlx_verify, "measure", boom)
    real = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: boom() if "convert.gguf_verify" in cmd
                        else real(cmd, *a, **k))


def test_verify_gguf_out_is_a_file(tmp_path, folder, monkeypatch):
    pytest.importorskip("gguf")
    pytest.importorskip("cyllama")
    from convert.to_gguf import convert_to_gguf

    model = convert_to_gguf(folder, tmp_path / "g" / "m.gguf", outtype="f32")
    (tmp_path / "file").write_text("x")
    _refuse_measuring(monkeypatch)
    before = snapshot(tmp_path)
    assert_error(cli("verify", model, "--out", tmp_path / "file"), "is a file")
    assert_error(cli("verify", model, "--out", tmp_path / "file" / "sub"), "is a file")
    assert_unchanged(before, tmp_path)


def test_verify_report_path_is_a_folder(tmp_path, folder, monkeypatch):
    pytest.importorskip("gguf")
    pytest.importorskip("cyllama")
    from convert.to_gguf import convert_to_gguf

    model = convert_to_gguf(folder, tmp_path / "g" / "m.gguf", outtype="f32")
    (tmp_path / "g" / "m.verify.json").mkdir()
    _refuse_measuring(monkeypatch)
    before = snapshot(tmp_path)
    assert_error(cli("verify", model), "m.verify.json", "is a folder")
    assert_unchanged(before, tmp_path)


def test_verify_mlx_out_is_a_file(tmp_path, folder, monkeypatch):
    pytest.importorskip("mlx.core")
    from convert import convert_to_mlx

    model = convert_to_mlx(folder, tmp_path / "mlx")
    (tmp_path / "file").write_text("x")
    _refuse_measuring(monkeypatch)
    before = snapshot(tmp_path)
    args = ["--contexts", "8", "--decode-tokens", "1", "--repeats", "1"]
    assert_error(cli("verify", model, "--out", tmp_path / "file", *args), "is a file")
    assert_error(cli("verify", model, "--out", tmp_path / "file" / "sub", *args), "is a file")
    assert_unchanged(before, tmp_path)


def test_verify_read_only_default_folder(tmp_path, folder, monkeypatch):
    pytest.importorskip("mlx.core")
    import sentinel.atomic as atomic
    from convert import convert_to_mlx

    model = convert_to_mlx(folder, tmp_path / "mlx")
    _refuse_measuring(monkeypatch)
    monkeypatch.setattr(atomic, "_read_only", lambda f: Path(f) == model)
    before = snapshot(tmp_path)
    assert_error(cli("verify", model, "--contexts", "8", "--decode-tokens", "1", "--repeats", "1"),
                 "read-only folder", str(model))
    assert_unchanged(before, tmp_path)
