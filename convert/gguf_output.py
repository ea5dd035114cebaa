"""Where a GGUF conversion writes, and how its two files appear: together, or not at all.

The GGUF and its Ollama Modelfile are written under temporary names beside
their targets (``.<name>.tmp-<pid>-…``, the pattern ``sentinel.atomic`` cleans
after a killed run) and renamed into place only when both are complete. With
``--force`` the previous pair is moved aside first and put back if either
rename fails. On any failure the temps are removed, and so are the folders the
run created for its output: a failed run leaves the disk as it found it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sentinel.atomic import check_writable, clean_stale_temps
from sentinel.errors import SentinelError, os_error


def modelfile_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(".gguf")] + ".Modelfile")


def check_output(src: Path, out: Path, force: bool) -> Path:
    """Refuse an output pair that cannot or must not be written, before anything is read or created."""
    if src.resolve() in out.resolve().parents:
        raise SentinelError(f"output {out} would be written inside the input checkpoint; choose another --out")
    return check_output_path(out, force)


def check_output_path(out: Path, force: bool) -> Path:
    """The checks that need no input (the CLI runs them before resolving, maybe pulling, the model)."""
    if out.suffix != ".gguf":
        raise SentinelError(f"--out must name a .gguf file, got {out}")
    if out.is_dir():
        raise SentinelError(f"output {out} is a folder; give a file name ending in .gguf")
    modelfile = modelfile_path(out)
    if modelfile.is_dir():
        raise SentinelError(f"the Modelfile path {modelfile} is a folder; move it or choose another --out")
    for path in (out, modelfile):
        if (path.exists() or path.is_symlink()) and not force:
            raise SentinelError(f"output {path} already exists (use --force to replace it)")
    check_writable(out)
    return out


@dataclass
class Temps:
    gguf: Path
    modelfile: Path


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders that did not exist (outermost first)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _temp(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def gguf_outputs(out: Path) -> Iterator[Temps]:
    """Yield temp paths for the GGUF and the Modelfile; publish both on success, leave nothing on failure."""
    modelfile = modelfile_path(out)
    created: list[Path] = []
    temps = None
    try:
        created = _make_parents(out.parent)
        for target in (out, modelfile):
            clean_stale_temps(target)
        temps = Temps(_temp(out), _temp(modelfile))
        yield temps
        _publish([(temps.gguf, out), (temps.modelfile, modelfile)])
    except BaseException as e:
        for path in (temps.gguf, temps.modelfile) if temps else ():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(e, OSError):
            raise os_error(e, out) from None
        raise


def _publish(pairs: list[tuple[Path, Path]]) -> None:
    """fsync each temp, give it a plain new file's mode, then rename all into place (old ones restored on failure)."""
    umask = os.umask(0)
    os.umask(umask)
    for tmp, _ in pairs:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)
    moved: list[tuple[Path, Path]] = []  # (aside, target)
    placed: list[Path] = []
    try:
        for tmp, target in pairs:
            if target.exists() or target.is_symlink():
                aside = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, aside)
                moved.append((aside, target))
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        for aside, target in moved:
            with contextlib.suppress(OSError):
                os.replace(aside, target)
        raise
    for aside, _ in moved:
        with contextlib.suppress(OSError):
            aside.unlink()
