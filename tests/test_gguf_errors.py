"""Bad input to `convert --to gguf` and `verify X.gguf`: one `error:` line, exit 1, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli import main
from sentinel.errors import SentinelError

pytest.importorskip("gguf")
pytest.importorskip("cyllama")

from convert.gguf_llama import LlamaCpp  # noqa: E402
from convert.to_gguf import convert_to_gguf  # noqa: E402
from test_gguf import make_checkpoint  # noqa: E402


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def assert_clean(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.fixture()
def checkpoint(tmp_path):
    return make_checkpoint(tmp_path, "llama", "heads")[1]


def test_truncated_and_foreign_files(tmp_path, checkpoint):
    good = convert_to_gguf(checkpoint, tmp_path / "good.gguf", outtype="f16")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "weights.gguf"
    foreign.write_bytes((checkpoint / "model.safetensors").read_bytes())
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(good.read_bytes()[:64])
    assert_one_line_error(cli("verify", str(truncated)), "truncated")
    assert_one_line_error(cli("verify", str(foreign)), "is not a GGUF file")
    assert_one_line_error(cli("verify", str(header_only)), "damaged GGUF")
    assert_one_line_error(cli("verify", str(tmp_path / "absent.gguf")), "does not exist")
    for bad in (truncated, foreign, header_only):
        with pytest.raises(SentinelError):
            LlamaCpp(bad)
    assert not list(tmp_path.glob("*.verify.json"))


def test_option_mistakes(tmp_path, checkpoint):
    out = tmp_path / "m.gguf"
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--quantize", "4", "--out", str(out)),
                          "--quantize applies to --to mlx")
    assert_one_line_error(cli("convert", str(checkpoint), "--outtype", "q8_0", "--out", str(tmp_path / "x")),
                          "--outtype applies to --to gguf")
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(tmp_path / "m.bin")),
                          "must name a .gguf file")
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(checkpoint / "in.gguf")),
                          "inside the input checkpoint")
    assert_clean(out)


def test_existing_output_needs_force(tmp_path, checkpoint):
    out = tmp_path / "m.gguf"
    assert cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)).exit_code == 0
    first = out.read_bytes()
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)), "already exists")
    result = cli("convert", str(checkpoint), "--to", "gguf", "--outtype", "f32", "--out", str(out), "--force")
    assert result.exit_code == 0 and out.stat().st_size > len(first)


@pytest.mark.parametrize("edit,fragment", [
    ({"model_type": "gpt2"}, "cannot be converted to GGUF"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope scaling 'yarn'"),
    ({"hidden_act": "gelu"}, "use SiLU"),
])
def test_unexpressible_models(tmp_path, checkpoint, edit, fragment):
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, **edit}))
    out = tmp_path / "m.gguf"
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)), fragment)
    assert_clean(out)


def test_bad_checkpoint_contents(tmp_path, checkpoint):
    out = tmp_path / "m.gguf"
    data = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(data[:-100])
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)), "truncated")
    (checkpoint / "model.safetensors").write_bytes(data)
    (checkpoint / "tokenizer.json").unlink()
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)), "no tokenizer.json")
    assert_clean(out)


def test_failure_mid_write_leaves_nothing(tmp_path, checkpoint, monkeypatch):
    import gguf

    calls = []

    def fail_on_third(data, qtype):
        calls.append(qtype)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return data.astype("float16" if qtype == gguf.GGMLQuantizationType.F16 else "float32")

    monkeypatch.setattr(gguf.quants, "quantize", fail_on_third)
    out = tmp_path / "m.gguf"
    assert_one_line_error(cli("convert", str(checkpoint), "--to", "gguf", "--out", str(out)), "no space left on device")
    assert_clean(out)
    assert not (tmp_path / "m.Modelfile").exists()
