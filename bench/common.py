"""Shared by the bench scripts: where results go, what each JSON records about the run, the real model."""

from __future__ import annotations

import datetime
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SHARED_NOTE = ("measured on a 2-core machine shared with other agents working in parallel: timings may be "
               "slowed or noisy; memory numbers are unaffected")


def run_facts() -> dict:
    """Machine, date and library versions, recorded in every results file."""
    from runtime_mlx.targets import device_facts

    versions = {}
    for name in ("mlx", "mlx-lm", "torch", "transformers", "peft"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    facts = device_facts()
    return {"date": datetime.date.today().isoformat(), "machine": f"{facts['chip']}, {facts['cpu_count']} cores, "
            f"{facts['ram_bytes'] / 2**30:.1f} GiB, {platform.system()} {platform.machine()}",
            "python": platform.python_version(), "versions": versions, "note": SHARED_NOTE}


def sentinel(*args: str) -> tuple[float, str]:
    """Run the real CLI in a subprocess: (wall seconds, stdout); a failure ends the bench with its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"sentinel {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def real_mlx(tmp: Path, dtype: str = "float32", src: Path | None = None, name: str = "smollm2-135m") -> Path:
    """The embedded model (or ``src``) converted by our converter into ``tmp``."""
    from convert import convert_to_mlx
    from sentinel.cli.resolve import resolve_model

    return convert_to_mlx(src or resolve_model("smollm2-135m"), tmp / f"{name}-{dtype}", dtype=dtype)
