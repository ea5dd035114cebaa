"""Every bad input to `sentinel convert` ends in one line, exit 1, and no output folder left behind."""

import errno
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from convert import convert_to_mlx
from sentinel.cli import main
from sentinel.errors import LayoutError, SentinelError
from test_convert import make_checkpoint


def run_cli(*args: str):
    return CliRunner().invoke(main, ["convert", *args])


def assert_clean(out: Path) -> None:
    """Neither the output folder nor a temp folder beside it survives a failure."""
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[-1]


@pytest.fixture()
def checkpoint(tmp_path):
    return make_checkpoint(tmp_path, "llama", True)[1]


def test_missing_input(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SentinelError, match="does not exist"):
        convert_to_mlx(tmp_path / "nope", out)
    assert_one_line_error(run_cli(str(tmp_path / "nope"), "--out", str(out)), "not found")
    assert_clean(out)


def test_unreadable_input(tmp_path, checkpoint):
    out = tmp_path / "out"
    (checkpoint / "config.json").write_text("{not json")
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), "config.json is not valid JSON")
    with pytest.raises(SentinelError, match="is not a model folder"):
        convert_to_mlx(checkpoint / "model.safetensors", out)
    assert_clean(out)


def test_missing_weights(tmp_path, checkpoint):
    out = tmp_path / "out"
    (checkpoint / "model.safetensors").unlink()
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), "has no safetensors weights")
    assert_clean(out)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_safetensors(tmp_path, checkpoint, damage):
    out = tmp_path / "out"
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * len(data))
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)),
                          "model.safetensors is not a readable safetensors file")
    assert_clean(out)


def test_shape_disagrees_with_layout(tmp_path, checkpoint):
    """A valid layout that is not the one the weights were sliced to."""
    out = tmp_path / "out"
    config = json.loads((checkpoint / "config.json").read_text())
    config["sentinel_layout"]["layers"][0] = {"q_heads": [0, 1, 2, 3, 4, 5, 6, 7], "kv_heads": [0, 1, 2, 3]}
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(LayoutError, match=r"q_proj.weight has shape \(64, 64\), the layout in config.json "
                                          r"expects \(128, 64\)"):
        convert_to_mlx(checkpoint, out)
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), "layout in config.json expects")
    assert_clean(out)


def test_unsupported_model_type(tmp_path, checkpoint):
    out = tmp_path / "out"
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "mamba"
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)),
                          "unsupported model_type 'mamba'", "supported: ", "llama", "qwen3")
    assert_clean(out)


def test_output_exists_needs_force(tmp_path, checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"
    result = run_cli(str(checkpoint), "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_disk_full(tmp_path, checkpoint, monkeypatch):
    """The first shard write that would pass 4 kB fails with ENOSPC, as a full disk does."""
    import convert.tensors as tensors

    class FullDisk:
        def __init__(self, path, mode):
            self.f, self.written = open(path, mode), 0

        def write(self, data):
            self.written += memoryview(data).nbytes
            if self.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def close(self):
            self.f.close()

    monkeypatch.setattr(tensors, "open", FullDisk, raising=False)
    out = tmp_path / "out"
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), "no space left on device (", str(out))
    assert_clean(out)


def test_bad_options(tmp_path, checkpoint):
    out = tmp_path / "out"
    with pytest.raises(SentinelError, match="--quantize must be one of 4, 6, 8"):
        convert_to_mlx(checkpoint, out, quantize=3)
    with pytest.raises(SentinelError, match="unsupported dtype 'int8'"):
        convert_to_mlx(checkpoint, out, dtype="int8")
    assert_clean(out)


def test_verify_without_torch_fails_before_converting(tmp_path, checkpoint):
    import subprocess
    import sys

    out = tmp_path / "out"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from sentinel.cli import main\n"
            f"main(['convert', {str(checkpoint)!r}, '--out', {str(out)!r}, '--verify'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("error: --verify needs torch to run the source checkpoint; "
                                                    "install torch or drop --verify")
    assert_clean(out)


def test_output_onto_input_refused(checkpoint):
    before = sorted(p.name for p in checkpoint.iterdir())
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(checkpoint), "--force"),
                          "would overwrite the input checkpoint")
    assert sorted(p.name for p in checkpoint.iterdir()) == before


@pytest.mark.parametrize("edit,message", [("drop", "checkpoint lacks tensor model.layers.2.mlp.up_proj.weight"),
                                          ("extra", "unexpected tensor model.layers.0.extra.weight")])
def test_missing_or_unexpected_tensor(tmp_path, checkpoint, edit, message):
    import mlx.core as mx

    out = tmp_path / "out"
    weights = mx.load(str(checkpoint / "model.safetensors"))
    if edit == "drop":
        del weights["model.layers.2.mlp.up_proj.weight"]
    else:
        weights["model.layers.0.extra.weight"] = mx.zeros((2,))
    mx.save_safetensors(str(checkpoint / "model.safetensors"), weights)
    assert_one_line_error(run_cli(str(checkpoint), "--out", str(out)), message)
    assert_clean(out)
