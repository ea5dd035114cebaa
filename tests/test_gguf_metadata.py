"""The GGUF's general.* block and the Modelfile's LICENSE, from SOURCE.json and the model card (issue 20)."""

from __future__ import annotations

import json

import pytest

from bad_input import plain_checkpoint

gguf = pytest.importorskip("gguf")


def fields(path) -> dict:
    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("general.")}


def test_license_and_base_model_from_source_json(tmp_path):
    from convert.to_gguf import convert_to_gguf

    src = plain_checkpoint(tmp_path / "smollm2-135m")
    (src / "SOURCE.json").write_text(json.dumps({"license": "Apache-2.0",
                                                 "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    out = convert_to_gguf(src, tmp_path / "out" / "m.gguf", outtype="f32")
    meta = fields(out)
    assert meta["general.license"] == "apache-2.0"
    assert meta["general.base_model.count"] == 1
    assert meta["general.base_model.0.organization"] == "HuggingFaceTB"
    assert meta["general.base_model.0.repo_url"] == "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
    params = sum(int(t.n_elements) for t in gguf.GGUFReader(out).tensors)
    assert meta["general.size_label"] == gguf.size_label(params, 0, 0, 0)
    assert meta["general.name"]
    modelfile = (tmp_path / "out" / "m.Modelfile").read_text()
    assert modelfile.splitlines()[-1] == 'LICENSE """apache-2.0"""'
    assert str(tmp_path) not in modelfile


def test_model_card_front_matter_and_license_file(tmp_path):
    from convert.to_gguf import convert_to_gguf

    src = plain_checkpoint(tmp_path / "tiny")
    (src / "README.md").write_text("---\nlicense: mit\nbase_model: org/upstream-1b\ntags:\n- code\n---\n# Tiny\n")
    (src / "LICENSE").write_text("MIT License\n\nPermission is hereby granted...\n")
    out = convert_to_gguf(src, tmp_path / "m.gguf", outtype="f32")
    meta = fields(out)
    assert meta["general.license"] == "mit"
    assert meta["general.base_model.0.repo_url"] == "https://huggingface.co/org/upstream-1b"
    assert "code" in meta["general.tags"]
    assert 'LICENSE """MIT License\n\nPermission is hereby granted..."""' in (tmp_path / "m.Modelfile").read_text()


def test_no_licence_known_writes_no_license_line(tmp_path):
    from convert.to_gguf import convert_to_gguf

    src = plain_checkpoint(tmp_path / "tiny")
    out = convert_to_gguf(src, tmp_path / "m.gguf", outtype="f32")
    assert "general.license" not in fields(out)
    assert "LICENSE" not in (tmp_path / "m.Modelfile").read_text()
