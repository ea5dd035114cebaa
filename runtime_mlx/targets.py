"""Deployment targets (RAM, usable Metal working set, memory bandwidth) and the current device's facts.

A target is *verified* only by measuring on it: ``is_device`` compares the
facts of the machine we run on (Apple Silicon? how much RAM?) with the target,
never a model or file name. The built-in table can be extended or overridden
by ``$SENTINEL_HOME/targets.json``::

    {"macbook-pro-24gb": {"ram_gb": 24, "chip": "M4 Pro", "bandwidth_gbs": 273}}

Pure Python: ``sentinel plan`` works on machines without MLX.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from sentinel.errors import SentinelError
from sentinel.paths import cache_root

GIB = 1 << 30
# Metal's recommendedMaxWorkingSetSize is about 2/3 of RAM on these machines (mlx-lm warns above 0.9x of it).
WORKING_SET_FRACTION = 2 / 3


@dataclass(frozen=True)
class Target:
    """One machine class. ``chip`` names the chip whose bandwidth the speed estimate uses."""

    name: str
    ram_gb: float
    bandwidth_gbs: float
    chip: str = ""
    working_set_fraction: float = WORKING_SET_FRACTION

    @property
    def ram_bytes(self) -> int:
        return int(self.ram_gb * GIB)

    @property
    def working_set_bytes(self) -> int:
        """Memory the GPU may use before Metal starts paging: the budget a model must fit in."""
        return int(self.ram_bytes * self.working_set_fraction)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "working_set_bytes": self.working_set_bytes}


# Bandwidths are Apple's published figures (DESIGN.md section 6).
BUILTIN: dict[str, dict[str, Any]] = {
    "macbook-air-8gb": {"ram_gb": 8, "chip": "M2", "bandwidth_gbs": 100},
    "macbook-air-16gb": {"ram_gb": 16, "chip": "M3", "bandwidth_gbs": 100},
    "macbook-pro-16gb": {"ram_gb": 16, "chip": "M4", "bandwidth_gbs": 120},
    "macbook-pro-24gb": {"ram_gb": 24, "chip": "M4 Pro", "bandwidth_gbs": 273},
    "macbook-pro-32gb": {"ram_gb": 32, "chip": "M1 Pro", "bandwidth_gbs": 200},
    "macbook-pro-48gb": {"ram_gb": 48, "chip": "M4 Max", "bandwidth_gbs": 546},
    "mac-mini-16gb": {"ram_gb": 16, "chip": "M4", "bandwidth_gbs": 120},
}
DEFAULT_TARGETS = ("macbook-air-8gb", "macbook-pro-16gb", "macbook-pro-32gb")


def user_targets_file() -> str:
    return str(cache_root() / "targets.json")


def _make(name: str, spec: Mapping[str, Any], where: str) -> Target:
    if not isinstance(spec, Mapping):
        raise SentinelError(f"{where}: target {name!r} must be an object with ram_gb and bandwidth_gbs")
    try:
        target = Target(name=name, ram_gb=float(spec["ram_gb"]), bandwidth_gbs=float(spec["bandwidth_gbs"]),
                        chip=str(spec.get("chip", "")),
                        working_set_fraction=float(spec.get("working_set_fraction", WORKING_SET_FRACTION)))
    except KeyError as e:
        raise SentinelError(f"{where}: target {name!r} lacks {e.args[0]}") from None
    except (TypeError, ValueError):
        raise SentinelError(f"{where}: target {name!r} has a non-numeric field") from None
    if target.ram_gb <= 0 or target.bandwidth_gbs <= 0 or not 0 < target.working_set_fraction <= 1:
        raise SentinelError(f"{where}: target {name!r} needs ram_gb > 0, bandwidth_gbs > 0, "
                            "0 < working_set_fraction <= 1")
    return target


def all_targets() -> dict[str, Target]:
    """The built-in table with the user's targets.json merged over it (a user entry wins)."""
    from sentinel.atomic import read_json

    table = {name: _make(name, spec, "built-in targets") for name, spec in BUILTIN.items()}
    path = user_targets_file()
    if os.path.isfile(path):
        user = read_json(path)
        if not isinstance(user, Mapping):
            raise SentinelError(f"{path}: expected an object mapping target names to specs")
        for name, spec in user.items():
            base = BUILTIN.get(name, {})
            table[name] = _make(name, {**base, **spec} if isinstance(spec, Mapping) else spec, path)
    return table


def get_targets(names: Optional[str | list[str]] = None) -> list[Target]:
    """Targets by name ("a,b" or a list); the default set when ``names`` is empty."""
    table = all_targets()
    if isinstance(names, str):
        given, names = names, [n.strip() for n in names.split(",") if n.strip()]
        if not names:  # "--target ," must not silently mean the default set
            raise SentinelError(f"--target {given!r} names no target; known: {', '.join(sorted(table))}")
    names = list(names or DEFAULT_TARGETS)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SentinelError(f"unknown target {unknown[0]!r}; known: {', '.join(sorted(table))} "
                            f"(add your own in {user_targets_file()})")
    return [table[n] for n in names]


# --- the machine we run on -----------------------------------------------------------------------

def _sysctl(key: str) -> Optional[str]:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _ram_bytes() -> int:
    if platform.system() == "Darwin":
        value = _sysctl("hw.memsize")
        if value and value.isdigit():
            return int(value)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cpu_model() -> str:
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_facts() -> dict[str, Any]:
    """Chip or CPU model, RAM, OS and whether this is Apple Silicon: what the verified rule looks at."""
    system, machine = platform.system(), platform.machine()
    return {
        "chip": _cpu_model(),
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "system": system,
        "machine": machine,
        "apple_silicon": system == "Darwin" and machine == "arm64",
        "cpu_count": os.cpu_count(),
    }


def is_device(target: Target, facts: Mapping[str, Any]) -> bool:
    """True only when the measured machine is that target: Apple Silicon with the same RAM (to 0.5 GiB),
    measured on its GPU (MLX's Metal backend; a CPU-backend run there is not what users will get)."""
    if not facts.get("apple_silicon") or facts.get("backend") != "metal":
        return False
    return abs(float(facts.get("ram_bytes", 0)) - target.ram_bytes) < GIB / 2
