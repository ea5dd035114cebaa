"""status.json: a progress file other tools can poll, always whole (written atomically)."""

from __future__ import annotations

import time
from pathlib import Path

from sentinel.atomic import write_json

PHASES = ("starting", "baseline", "train", "blocklocal", "control", "evaluate", "importance", "prune", "save", "done", "failed")


class Status:
    """Keeps the current phase/cycle/step and rewrites status.json on every update."""

    def __init__(self, path: str | Path, cycles: int, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled  # disabled on non-main processes of a DDP run
        self.state = {"phase": "starting", "cycle": 0, "cycles": cycles, "step": 0, "steps": 0,
                      "loss": None, "tokens_per_s": None, "eta_s": None, "started_at": time.time(),
                      "updated_at": time.time(), "message": ""}
        self.write()

    def update(self, **fields) -> None:
        unknown = set(fields) - set(self.state)
        if unknown:
            raise KeyError(f"unknown status fields {sorted(unknown)}")
        if "phase" in fields and fields["phase"] not in PHASES:
            raise ValueError(f"unknown phase {fields['phase']!r}")
        self.state.update(fields, updated_at=time.time())
        self.write()

    def write(self) -> None:
        if self.enabled:
            write_json(self.path, self.state)
