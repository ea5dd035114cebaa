"""Outputs stay safe: SIGTERM leaves no temp folder, stale temps are cleaned, no command replaces its own
input, an --out below a regular file is one error line, and every output file gets the same mode."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from sentinel.atomic import atomic_dir, check_output_dir, clean_stale_temps
from sentinel.cli import main
from sentinel.errors import SentinelError
from test_runtime import chat_folder


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return chat_folder(tmp_path_factory.mktemp("hf") / "tiny")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# Slow the converter down at its first tensor, so that SIGTERM arrives while the temp folder exists.
SLOW_CONVERT = textwrap.dedent("""
    import sys, time
    import convert.to_mlx as to_mlx
    real = to_mlx.materialize
    def slow(*args, **kwargs):
        time.sleep(60)
        return real(*args, **kwargs)
    to_mlx.materialize = slow
    from sentinel.cli import main
    main(sys.argv[1:], prog_name="sentinel")
""")


def test_sigterm_during_convert_leaves_nothing(hf, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, "convert", str(hf), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftovers(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert leftovers(tmp_path), "the converter never created its temp folder"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert [line for line in err.splitlines() if line.startswith("error:")] == ["error: terminated (SIGTERM)"]
    assert "Traceback" not in err
    assert leftovers(tmp_path) == [] and not out.exists()


def test_rerun_cleans_stale_temps_of_killed_runs(hf, tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / f".out.tmp-{dead_pid()}-x1y2z3"
    legacy = tmp_path / ".out.tmp-ab12cd34"  # mkdtemp name of an older Sentinel (no pid)
    for folder in (stale, legacy):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 1024)
    (tmp_path / f".out.old-{dead_pid()}").mkdir()
    alive = tmp_path / f".out.tmp-{os.getpid()}-live00"  # a run in progress: left alone
    alive.mkdir()
    result = CliRunner().invoke(main, ["convert", str(hf), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert leftovers(tmp_path) == [alive.name]
    assert (out / "config.json").is_file()


def test_clean_stale_temps_ignores_other_names(tmp_path):
    for name in (".out.tmp-notapid", "out.tmp-123-x", ".outer.tmp-1-x", ".out.tmp-"):
        (tmp_path / name).mkdir()
    assert clean_stale_temps(tmp_path / "out") == []


def test_no_command_replaces_its_own_input(hf, tmp_path):
    for target in (hf, hf / "sub", hf.parent):
        with pytest.raises(SentinelError, match=r"would overwrite the input .*; choose another --out"):
            check_output_dir(target, inputs=[hf], force=True)
    with pytest.raises(SentinelError, match="would overwrite the input"):
        with atomic_dir(hf, force=True, inputs=[hf]):
            pass
    assert (hf / "config.json").is_file()
    check_output_dir(tmp_path / "elsewhere", inputs=[hf])  # a sibling is fine


def test_out_below_a_regular_file(hf, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SentinelError, match=r"cannot create .*/file/sub/deeper: .*/file is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "sub" / "deeper")
    with pytest.raises(SentinelError, match="already exists"):
        check_output_dir(tmp_path)
    result = CliRunner().invoke(main, ["convert", str(hf), "--out", str(tmp_path / "file" / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot create {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file, not a folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_outputs_share_one_file_mode(hf, tmp_path):
    """verify.json/.md and the card's README.md get the mode a plain open() gives (not mkstemp's 0600)."""
    mlx = tmp_path / "mlx"
    assert CliRunner().invoke(main, ["convert", str(hf), "--out", str(mlx), "--dtype", "float32"]).exit_code == 0
    result = CliRunner().invoke(main, ["verify", str(mlx), "--contexts", "8", "--decode-tokens", "2",
                                       "--repeats", "1", "--target", "macbook-air-8gb"])
    assert result.exit_code == 0, result.stderr
    assert CliRunner().invoke(main, ["card", str(mlx)]).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    for name in ("verify.json", "verify.md", "README.md", "config.json"):
        assert stat.S_IMODE((mlx / name).stat().st_mode) == want, name
    assert json.loads((mlx / "verify.json").read_text())["settings"]["compute_dtype"] == "float32"


def test_atomic_dir_gives_every_file_the_same_mode(tmp_path):
    """A writer that leaves a 0600 file (transformers' save_pretrained does) still yields a uniform folder."""
    umask = os.umask(0)
    os.umask(umask)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "private.bin").write_bytes(b"x")
        os.chmod(tmp / "private.bin", 0o600)
        (tmp / "plain.json").write_text("{}")
        (tmp / "tool.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp / "tool.sh", 0o700)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes == {"private.bin": 0o666 & ~umask, "plain.json": 0o666 & ~umask, "tool.sh": 0o700 | (0o666 & ~umask)}
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
