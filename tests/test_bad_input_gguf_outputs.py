"""`convert --to gguf` output paths: below a file, read-only, Modelfile path a folder, full disk, killed runs;
GGUF + Modelfile are published together or not at all, and a failed run leaves nothing behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bad_input import assert_error, assert_unchanged, cli, read_only_copy, snapshot, tmpfs
from test_bad_input_gguf import base, ckpt, convert  # noqa: F401  (fixtures)

pytest.importorskip("gguf")


def test_out_under_a_regular_file(tmp_path, ckpt):
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "file" / "m.gguf"), "is a file")
    assert_error(convert(ckpt, tmp_path / "file" / "sub" / "m.gguf"), "is a file")
    assert_unchanged(before, tmp_path)


def test_default_output_when_home_is_a_file(tmp_path, ckpt):
    home = tmp_path / "home"
    home.write_text("not a folder")
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, None, env={"SENTINEL_HOME": str(home)}), "is a file", str(home))
    assert_unchanged(before, tmp_path)


def test_modelfile_path_is_a_folder(tmp_path, ckpt):
    (tmp_path / "m.Modelfile").mkdir()
    (tmp_path / "m.Modelfile" / "keep").write_text("mine")
    before = snapshot(tmp_path)
    for extra in ((), ("--force",)):
        assert_error(convert(ckpt, tmp_path / "m.gguf", *extra), "m.Modelfile")
        assert_unchanged(before, tmp_path)


def test_failure_leaves_no_parent_it_created(tmp_path, ckpt):
    (ckpt / "tokenizer.json").write_text("[]")
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, tmp_path / "new" / "deeper" / "m.gguf"), "tokenizer.json")
    assert_unchanged(before, tmp_path)


def _fail_at_third_tensor(monkeypatch, err: int = errno.ENOSPC):
    import gguf

    real, calls = gguf.quants.quantize, []

    def failing(data, qtype):
        calls.append(qtype)
        if len(calls) >= 3:
            raise OSError(err, os.strerror(err))
        return real(data, qtype)

    monkeypatch.setattr(gguf.quants, "quantize", failing)


def test_mid_write_failure_removes_created_parents_and_keeps_old_output(tmp_path, ckpt, monkeypatch):
    assert convert(ckpt, tmp_path / "old" / "m.gguf").exit_code == 0
    before = snapshot(tmp_path)
    _fail_at_third_tensor(monkeypatch)
    line = assert_error(convert(ckpt, tmp_path / "new" / "m.gguf"), "no space left on device")
    assert str(tmp_path / "new" / "m.gguf") in line
    assert_error(convert(ckpt, tmp_path / "old" / "m.gguf", "--force"), "no space left on device")
    assert_unchanged(before, tmp_path)


def test_disk_full_on_a_real_tmpfs(tmp_path, ckpt):
    with tmpfs(tmp_path / "small", size="64k") as small:
        (small / "keep").write_text("mine")
        before = snapshot(small)
        line = assert_error(convert(ckpt, small / "m.gguf"), "no space left on device")
        assert str(small / "m.gguf") in line
        assert_unchanged(before, small)


def test_read_only_folder_in_process(tmp_path, ckpt, monkeypatch):
    import sentinel.atomic as atomic

    target = tmp_path / "ro"
    target.mkdir()
    monkeypatch.setattr(atomic, "_read_only", lambda folder: Path(folder) == target)
    before = snapshot(tmp_path)
    assert_error(convert(ckpt, target / "m.gguf"), "read-only folder", str(target))
    assert_error(convert(ckpt, target / "sub" / "m.gguf"), "read-only folder", str(target))
    assert_unchanged(before, tmp_path)


def test_read_only_folder_mounted(tmp_path, ckpt):
    target = tmp_path / "ro"
    target.mkdir()
    (target / "keep").write_text("mine")
    before = snapshot(tmp_path)
    with read_only_copy(target):
        assert_error(convert(ckpt, target / "m.gguf"), "read-only folder", str(target))
        assert_error(convert(ckpt, None, env={"SENTINEL_HOME": str(target)}), "read-only folder")
    assert_unchanged(before, tmp_path)


SLOW_GGUF = textwrap.dedent("""
    import sys, time
    import gguf
    real = gguf.quants.quantize
    def slow(data, qtype):
        time.sleep(60)
        return real(data, qtype)
    gguf.quants.quantize = slow
    from sentinel.cli import main
    main(sys.argv[1:], prog_name="sentinel")
""")


def test_sigkilled_temp_is_cleaned_by_next_run(tmp_path, ckpt):
    out = tmp_path / "m.gguf"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_GGUF, "convert", str(ckpt), "--to", "gguf",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.gguf.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob(".m.gguf.tmp-*")), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert convert(ckpt, out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.Modelfile", "m.gguf", "src"]


def test_good_run_publishes_gguf_and_modelfile_together(tmp_path, ckpt):
    result = convert(ckpt, tmp_path / "a" / "m.gguf")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m.Modelfile", "m.gguf"]


def test_failed_modelfile_rename_restores_the_previous_pair(tmp_path, ckpt, monkeypatch):
    import convert.gguf_output as output

    assert convert(ckpt, tmp_path / "m.gguf").exit_code == 0
    before = snapshot(tmp_path)
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith("m.Modelfile") and ".tmp-" in str(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    assert_error(convert(ckpt, tmp_path / "m.gguf", "--outtype", "f32", "--force"), "no space left on device")
    assert_unchanged(before, tmp_path)


def test_sigterm_mid_write_leaves_nothing(tmp_path, ckpt):
    out = tmp_path / "new" / "m.gguf"
    before = snapshot(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_GGUF, "convert", str(ckpt), "--to", "gguf",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob("new/.m.gguf.tmp-*")):
        time.sleep(0.1)
    assert list(tmp_path.glob("new/.m.gguf.tmp-*")), "the converter never created its temp file"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert_unchanged(before, tmp_path)


def test_bad_out_is_refused_before_an_embedded_model_is_pulled(tmp_path, monkeypatch):
    import sentinel.cli.resolve as resolve

    def boom(*args, **kwargs):
        raise AssertionError("pulled before checking --out")

    monkeypatch.setattr(resolve, "pull", boom)
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    for args in (["--to", "gguf", "--out", tmp_path / "file" / "m.gguf"], ["--out", tmp_path / "file" / "mlx"]):
        assert_error(cli("convert", "smollm2-135m", *args), "is a file")
    assert_unchanged(before, tmp_path)
