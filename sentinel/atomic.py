"""Write outputs so that a crash or a bad input never leaves half a result behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from sentinel.errors import SentinelError, os_error


def _file_mode(mode: int) -> int:
    """``mode`` less the process umask (what open() would give), so every output has the same mode."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def check_output_dir(target: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                     force: bool = False) -> Path:
    """Refuse an output folder that cannot or must not be written, before any work starts.

    Refused: a target that is, contains or lies inside one of ``inputs`` (a command may
    never replace its own input, even with --force); a target below a regular file; an
    existing target without ``force``; an existing target that is not a folder.
    """
    target = Path(target).expanduser()
    resolved = target.resolve()
    for source in inputs:
        src = Path(source).expanduser().resolve()
        if resolved == src or src in resolved.parents or resolved in src.parents:
            raise SentinelError(f"output {target} would overwrite the input {source}; choose another --out")
    check_creatable(target)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise SentinelError(f"output {target} exists and is not a folder")
        if not force:
            raise SentinelError(f"output {target} already exists (use --force to replace it)")
    return target


def check_creatable(folder: str | os.PathLike) -> Path:
    """Refuse a folder that cannot be created because it, or a folder above it, is a regular file,
    or because the folder its temp would be made in is read-only (checked before any work starts)."""
    folder = Path(folder).expanduser()
    for path in (folder.resolve(), *folder.resolve().parents):
        if path.exists():
            if not path.is_dir():
                raise SentinelError(f"cannot create {folder}: {path} is a file, not a folder")
            break
    check_writable(folder)
    return folder


def _read_only(folder: Path) -> bool:
    """True when nothing can be created in ``folder`` (read-only mount, or no write permission)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(folder, os.W_OK | os.X_OK)


def check_writable(target: str | os.PathLike) -> Path:
    """The nearest existing folder above ``target`` (where its temp is created) must accept new files."""
    target = Path(target).expanduser()
    for path in target.resolve().parents:
        if path.exists():
            if not path.is_dir():
                raise SentinelError(f"cannot create {target}: {path} is a file, not a folder")
            if _read_only(path):
                raise SentinelError(f"read-only folder {path} (cannot create {target} there)")
            break
    return target


def check_report_folder(folder: str | os.PathLike, names: Iterable[str] = ()) -> Path:
    """A folder that reports (``names``, e.g. verify.json, .md) will be written into: creatable, not a
    file, writable, and none of ``names`` already a folder there."""
    folder = check_creatable(folder)
    check_writable(folder / "report")
    for name in names:
        if (folder / name).is_dir():
            raise SentinelError(f"cannot write {folder / name}: it is a folder")
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def clean_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>`` left beside ``target`` by killed runs.

    A temp is stale when the process that made it is gone (or, for names without a pid from
    older versions, always). Returns what was removed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-(?:(\d+)(?:-.*)?|[a-z0-9_]{{8}})$")
    removed = []
    for path in target.parent.iterdir():
        found = pattern.match(path.name)
        if not found or (found.group(1) and _pid_alive(int(found.group(1)))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, force: bool = False,
               inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; rename it into place only on success.

    On any exception (SIGTERM included: the CLI turns it into SystemExit) the temp folder
    is removed and ``target`` is untouched; temps of earlier killed runs are removed first.
    """
    target = check_output_dir(target, inputs, force)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    except OSError as e:
        _remove_empty(created)
        raise os_error(e, target) from None
    os.chmod(tmp, _file_mode(0o777))  # mkdtemp's 0700 would surprise users of the final folder
    try:
        yield tmp
        _normalize_modes(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            try:
                tmp.rename(target)
            except BaseException:
                old.rename(target)  # put the previous result back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)  # a failed run leaves no parent folder it made
        raise


def _remove_empty(folders: list[Path]) -> None:
    """rmdir ``folders`` (innermost first, as listed); a folder something else filled stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _normalize_modes(folder: Path) -> None:
    """Give every file the read/write bits a plain open() would (some writers, e.g. transformers'
    save_pretrained, leave 0600 files), so one output folder never mixes 0600 and 0644."""
    want = _file_mode(0o666)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode & 0o7777
            if mode | want != mode:
                os.chmod(path, mode | want)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (temp file + os.replace) with the mode a plain open() would give."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _file_mode(0o666))  # mkstemp's 0600 would differ from every other output
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temp file + os.replace), so readers never see a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(0o666))  # mkstemp's 0600 would hide config.json from other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, turning a missing or broken file into a one-line SentinelError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SentinelError(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SentinelError(f"{path} is not valid JSON ({e})") from None
