"""`convert --to gguf` with bad config values, tokenizer files, model card and weights: one `error:` line,
nothing new on disk, every pre-existing file byte-identical (output paths: test_bad_input_gguf_outputs.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bad_input import assert_error, assert_unchanged, cli, plain_checkpoint, snapshot

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return plain_checkpoint(tmp_path_factory.mktemp("gguf-src") / "tiny")


@pytest.fixture()
def ckpt(tmp_path, base):
    folder = tmp_path / "src" / "tiny"
    shutil.copytree(base, folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def convert(ckpt: Path, out, *extra: str, env=None):
    args = ["convert", str(ckpt), "--to", "gguf"] + (["--out", str(out)] if out is not None else []) + list(extra)
    return cli(*args, env=env)


CONFIG_CASES = {
    "rope_scaling string": ({"rope_scaling": "linear"}, "rope_scaling"),
    "rope_parameters list": ({"rope_parameters": [1, 2]}, "rope_parameters"),
    "rope_theta string": ({"rope_theta": "fast"}, "rope_theta"),
    "rope_theta numeric string": ({"rope_theta": "10000"}, "rope_theta"),
    "rope_theta negative": ({"rope_theta": -1.0}, "rope_theta"),
    "rms_norm_eps string": ({"rms_norm_eps": "tiny"}, "rms_norm_eps"),
    "rms_norm_eps nan": ({"rms_norm_eps": float("nan")}, "rms_norm_eps"),
    "max_position_embeddings string": ({"max_position_embeddings": "2048"}, "max_position_embeddings"),
    "max_position_embeddings 2**40": ({"max_position_embeddings": 2**40}, "max_position_embeddings"),
    "heads nine": ({"num_attention_heads": "nine"}, "num_attention_heads"),
    "heads zero": ({"num_attention_heads": 0}, "num_attention_heads"),
    "kv heads zero": ({"num_key_value_heads": 0}, "num_key_value_heads"),
    "vocab_size null": ({"vocab_size": None}, "vocab_size"),
    "hidden_size float": ({"hidden_size": 128.0}, "hidden_size"),
    "attention_bias string": ({"attention_bias": "yes"}, "attention_bias"),
    "tie_word_embeddings string": ({"tie_word_embeddings": "no"}, "tie_word_embeddings"),
    "rope_parameters theta string": ({"rope_parameters": {"rope_type": "default", "rope_theta": "x"}},
                                     "rope_theta"),
    "rope_scaling factor string": ({"rope_scaling": {"type": "linear", "factor": "2"}}, "rope_scaling.factor"),
    "rope_type an integer": ({"rope_scaling": {"rope_type": 5}}, "rope_type"),
    "max_position_embeddings 2**31": ({"max_position_embeddings": 2**31}, "max_position_embeddings"),
    "head_dim zero": ({"head_dim": 0}, "head_dim"),
    "eos_token_id a string": ({"eos_token_id": "x"}, "eos_token_id"),
    "sentinel_layout a string": ({"sentinel_layout": "x"}, "sentinel_layout"),
    "text_config a list": ({"text_config": [1]}, "text_config"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_values(tmp_path, ckpt, case):
    changes, fragment = CONFIG_CASES[case]
    edit_json(ckpt / "config.json", **changes)
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "out" / "m.gguf"), fragment, "config.json")
    assert_unchanged(before, tmp_path)


def _tok_list(folder):
    (folder / "tokenizer.json").write_text("[1, 2]")


def _tok_no_vocab(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    del tok["model"]["vocab"]
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_vocab_list(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["model"]["vocab"] = list(tok["model"]["vocab"])
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_vocab_id_string(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    first = next(iter(tok["model"]["vocab"]))
    tok["model"]["vocab"][first] = "zero"
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_added_no_id(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    del tok["added_tokens"][0]["id"]
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_added_not_list(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"] = {"a": 1}
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_model_string(folder):
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["model"] = "BPE"
    (folder / "tokenizer.json").write_text(json.dumps(tok))


def _tok_config_broken(folder):
    (folder / "tokenizer_config.json").write_text("{not json")


def _tok_config_list(folder):
    (folder / "tokenizer_config.json").write_text("[]")


def _special_map_broken(folder):
    (folder / "special_tokens_map.json").write_text("{")


def _generation_config_broken(folder):
    (folder / "generation_config.json").write_text("nope")


def _tok_not_utf8(folder):
    (folder / "tokenizer.json").write_bytes(b"\xff\xfe{}")


def _tok_edit(**changes):
    def damage(folder):
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok.update(changes)
        (folder / "tokenizer.json").write_text(json.dumps(tok))
    return damage


def _side_file(name, data):
    return lambda folder: (folder / name).write_text(json.dumps(data))


TOKENIZER_CASES = {
    "pre_tokenizer a string": (_tok_edit(pre_tokenizer="x"), "pre_tokenizer"),
    "decoder a list": (_tok_edit(decoder=[1]), "decoder"),
    "normalizer a string": (_tok_edit(normalizer="x"), "normalizer"),
    "pre_tokenizer steps not objects": (_tok_edit(pre_tokenizer={"type": "Sequence", "pretokenizers": [1]}),
                                        "pretokenizers"),
    "generation temperature a string": (_side_file("generation_config.json", {"temperature": "hot"}),
                                        "temperature"),
    "generation eos id a string": (_side_file("generation_config.json", {"eos_token_id": "x"}), "eos_token_id"),
    "tokenizer_config eos_token an int": (_side_file("tokenizer_config.json", {"eos_token": 5}), "eos_token"),
    "tokenizer_config chat_template an int": (_side_file("tokenizer_config.json", {"chat_template": 5}),
                                              "chat_template"),
    "special_tokens_map eos a list": (_side_file("special_tokens_map.json", {"eos_token": ["a"]}), "eos_token"),
    "tokenizer.json a list": (_tok_list, "tokenizer.json"),
    "no model.vocab": (_tok_no_vocab, "vocab"),
    "vocab a list": (_tok_vocab_list, "vocab"),
    "vocab id a string": (_tok_vocab_id_string, "vocab"),
    "added token without id": (_tok_added_no_id, "added_tokens"),
    "added_tokens not a list": (_tok_added_not_list, "added_tokens"),
    "model a string": (_tok_model_string, "model"),
    "tokenizer_config.json not JSON": (_tok_config_broken, "tokenizer_config.json"),
    "tokenizer_config.json a list": (_tok_config_list, "tokenizer_config.json"),
    "special_tokens_map.json not JSON": (_special_map_broken, "special_tokens_map.json"),
    "generation_config.json not JSON": (_generation_config_broken, "generation_config.json"),
    "tokenizer.json not UTF-8": (_tok_not_utf8, "tokenizer.json"),
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_tokenizer_files(tmp_path, ckpt, case):
    damage, fragment = TOKENIZER_CASES[case]
    damage(ckpt)
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "out" / "m.gguf"), fragment)
    assert_unchanged(before, tmp_path)


def test_model_card_and_source_json_broken(tmp_path, ckpt):
    (ckpt / "README.md").write_text("---\nlicense: [unclosed\n---\n")
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "m.gguf"), "README.md")
    (ckpt / "README.md").unlink()
    (ckpt / "SOURCE.json").write_text("[]")
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "m.gguf"), "SOURCE.json")
    assert_unchanged(before, tmp_path)


def test_int8_weights_without_scales(tmp_path, ckpt):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(ckpt / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = (tensors[name] * 100).clip(-127, 127).astype("int8")
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "m.gguf"), name, "I8")
    assert_unchanged(before, tmp_path)
