"""Helpers for the bad-input tests: run the CLI, check the one-line promise, prove nothing changed on disk."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner


def cli(*args: str, env: dict | None = None):
    from sentinel.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_error(result, *fragments: str) -> str:
    """Non-zero exit, last line ``error: ...`` containing every fragment, no traceback anywhere."""
    assert result.exit_code not in (0, 70), result.output
    lines = result.stderr.strip().splitlines()  # the promise is about stderr's last line
    assert lines and lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def snapshot(folder: Path) -> dict[str, object]:
    """Every path below ``folder`` with its bytes (files), link target (links) or None (folders)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    state: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_file():
            state[rel] = path.read_bytes()
        else:
            state[rel] = None
    return state


def assert_unchanged(before: dict[str, object], folder: Path) -> None:
    after = snapshot(folder)
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (new or gone or changed), f"new {new}, gone {gone}, changed {changed}"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at ``path`` (disk-full and read-only cases); skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); "
                    "the in-process variant of this case still runs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_copy(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself (chmod does not stop root); skipped if not allowed."""
    ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({ok.stderr.strip()}); the in-process variant still runs")
    ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
    try:
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({ro.stderr.strip()})")
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def plain_checkpoint(folder: Path, model_type: str = "llama") -> Path:
    """A tiny random HF folder with the tiny BPE tokenizer (transformers only: no project code needed)."""
    from tiny import tiny_model
    from tiny_tokenizer import save_tiny_checkpoint

    return save_tiny_checkpoint(tiny_model(model_type, vocab_size=320, hidden_size=128), Path(folder))
