"""The prepared GPU check: one command that spends a short GPU loan well and always leaves one JSON.

    bash scripts/gpu_check.sh OUT_DIR [--dry-run] [--budget SECONDS]

Sections run one after the other, each in its own process under a hard time limit
(killed with its process group when the limit passes): the CUDA-only tests
(``pytest -m cuda``), the per-stage tokens/s and peak memory (bench/gpu_check_stages.py)
and one short forge through the CLI (bench/gpu_check_forge.py). Time a section does
not use rolls over to the later ones. The JSON (schema: bench/gpu_check_schema.py,
docs/GPU.md) is rewritten after every section, so a kill from outside still leaves it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_ID = "sentinel-gpu-check/1"
# Share of the budget left when each section starts (later sections inherit what earlier ones leave).
SHARES = {"tests": 0.22, "stages": 0.50, "forge": 0.28}
RESERVE_S = 8.0  # for the estimates and the last write


def run_bounded(cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` with output to ``log``; past ``timeout`` the whole process group is killed."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy(),
                                start_new_session=True)
        try:
            rc, timed_out = proc.wait(timeout=max(timeout, 1.0)), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
    tail = log.read_bytes()[-4000:].decode("utf-8", "replace")
    return {"command": cmd, "returncode": rc, "timed_out": timed_out, "seconds": time.perf_counter() - start,
            "output_tail": tail}


def env_facts() -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "bitsandbytes", "gguf",
                 "click", "matplotlib", "pytest", "flash-linear-attention", "causal-conv1d"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    commit = commit or os.environ.get("SENTINEL_GIT_COMMIT")  # the device's copy of the tree has no .git
    return {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
            "cpu_count": os.cpu_count(), "versions": versions, "cuda_available": cuda,
            "cuda_version": torch.version.cuda, "device_name": props.name if props else None,
            "gpu_memory_bytes": props.total_memory if props else None,
            "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None, "git_commit": commit}


def plans(dry_run: bool, defaults: dict, device: str) -> dict:
    """Settings of the stage runs and the short forge: the default forge's shape on a GPU, tiny on a dry run."""
    shapes = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen3.5-4b"]
    # Priority order (later runs are the first skipped when time runs out): every shape in the default mode,
    # then the other modes from the biggest shape down, where the tier matters most.
    runs = [[s, "full"] for s in shapes] + [[s, m] for s in reversed(shapes) for m in ("nf4", "lora")]
    if dry_run:  # every shape once, every mode once: the same code paths in a third of the time
        runs = [[s, "full"] for s in shapes] + [[shapes[0], "lora"], [shapes[0], "nf4"]]
        stages = dict(steps=2, warmup_steps=1, batch_size=2, seq_len=32, train_windows=8, eval_windows=2,
                      calib_windows=2, channel_group=16)
        forge = dict(steps=2, batch_size=2, seq_len=32, train_tokens=3000, eval_tokens=256, calib_windows=2)
    else:
        stages = dict(steps=12, warmup_steps=3, batch_size=defaults["batch_size"], seq_len=defaults["seq_len"],
                      train_windows=64, eval_windows=16, calib_windows=defaults["calib_windows"], channel_group=64)
        forge = dict(steps=20, batch_size=defaults["batch_size"], seq_len=defaults["seq_len"], train_tokens=60_000,
                     eval_tokens=4096, calib_windows=8)
    stages.update(dry_run=dry_run, device=device, runs=runs, target_params=defaults["target_params"],
                  cycles=defaults["cycles"])
    forge.update(dry_run=dry_run, device=device, target_params=0.9)
    return {"stages": stages, "forge": forge}


class Check:
    def __init__(self, out_dir: Path, dry_run: bool, budget: float, carry_dirs: list[str]):
        self.out_dir, self.dry_run, self.budget, self.carry_dirs = out_dir, dry_run, budget, carry_dirs
        self.start = time.time()
        self.deadline = self.start + budget - RESERVE_S
        # Models and checkpoints stay outside OUT_DIR (a device call brings back only small files); logs go in.
        self.work = Path(tempfile.mkdtemp(prefix="sentinel-gpu-check-"))
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.doc = {"schema": SCHEMA_ID, "mode": "dry-run" if dry_run else "gpu", "complete": False,
                    "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "budget_s": budget, "wall_s": None, "env": None, "forge_defaults": None,
                    "sections": {name: {"status": "pending"} for name in SHARES}, "estimates": None, "tiers": None,
                    "schema_errors": []}

    def write(self) -> Path:
        self.doc["wall_s"] = time.time() - self.start
        for f in self.work.iterdir():
            if f.is_file() and f.suffix in (".log", ".jsonl", ".json"):
                shutil.copy(f, self.logs / f.name)
        path = self.out_dir / "gpu_check.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str) + "\n")
        tmp.replace(path)
        return path

    def section_limit(self, name: str) -> float:
        names = list(SHARES)
        later = sum(SHARES[n] for n in names[names.index(name):])
        return max(0.0, (self.deadline - time.time()) * SHARES[name] / later)

    def run_section(self, name: str, fn) -> None:
        limit = self.section_limit(name)
        if limit < 5:
            self.doc["sections"][name] = {"status": "skipped", "reason": "time budget spent", "budget_s": limit}
        else:
            t0 = time.time()
            try:
                result = fn(limit)
            except Exception as e:  # the JSON is written whatever a section does
                result = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]}
            result.update(budget_s=limit, seconds=time.time() - t0)
            self.doc["sections"][name] = result
        self.write()

    def worker(self, module: str, plan: dict, limit: float) -> dict:
        """A worker process with its own deadline a little inside the hard kill."""
        plan = dict(plan, deadline=time.time() + limit - 4, carry_dirs=self.carry_dirs,
                    work=str(self.work / module))
        plan_path, out = self.work / f"{module}.plan.json", self.work / f"{module}.json"
        plan_path.write_text(json.dumps(plan))
        out.unlink(missing_ok=True)
        proc = run_bounded([sys.executable, "-m", f"bench.{module}", str(plan_path), str(out)], limit,
                           self.work / f"{module}.log")
        result = json.loads(out.read_text()) if out.is_file() else {}
        status = result.pop("status", None) or ("timeout" if proc["timed_out"] else
                                                "ok" if proc["returncode"] == 0 else "failed")
        if proc["timed_out"] and status == "ok":
            status = "timeout"
        if proc["timed_out"]:
            mark_unfinished(result, plan)
        return {"status": status, "worker": {k: proc[k] for k in ("returncode", "timed_out", "output_tail")},
                **result}


def mark_unfinished(result: dict, plan: dict) -> None:
    """After a kill at the limit: say what never finished instead of leaving it out or 'pending'."""
    why = "stopped at the section's time limit"
    if "runs" in plan:
        done = {(r["shape"], r["mode"]) for r in result.setdefault("runs", [])}
        for run in result["runs"]:
            if run.get("status") == "pending":
                run.update(status="timeout", reason=why)
            for stage in run.get("stages", {}).values():
                if stage.get("status") == "pending":
                    stage.update(status="timeout", reason=why)
        result["runs"] += [{"shape": s, "mode": m, "status": "skipped", "reason": f"{why} before this run"}
                           for s, m in plan["runs"] if (s, m) not in done]
    else:
        result.setdefault("real_weights", {"carried": False, "reason": f"{why} before the weights were checked"})
        result.setdefault("reason", why)


def main(argv: list[str] | None = None) -> int:
    from bench import gpu_check_api as api
    from bench.gpu_check_estimate import estimates, tier_table
    from bench.gpu_check_schema import SCHEMA, validate
    from bench.gpu_check_tests import run_tests

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="Folder for gpu_check.json (and work/ with the logs).")
    parser.add_argument("--dry-run", action="store_true", help="Tiny models on the CPU, seconds, same JSON.")
    parser.add_argument("--budget", type=float, default=None, help="Total seconds [default: 480; dry run 240].")
    parser.add_argument("--carry-dir", action="append", default=[], help="Folder with carried files (repeatable).")
    parser.add_argument("--keep-work", action="store_true", help="Keep the temporary work folder (models, forge).")
    args = parser.parse_args(argv)
    budget = args.budget or (240.0 if args.dry_run else 480.0)
    check = Check(args.out_dir, args.dry_run, budget, [str(Path(d).resolve()) for d in args.carry_dir])
    check.doc["env"] = env_facts()
    check.write()
    device = "cuda" if check.doc["env"]["cuda_available"] and not args.dry_run else "cpu"
    defaults = api.forge_defaults()
    check.doc["forge_defaults"] = defaults
    plan = plans(args.dry_run, defaults, device)
    check.run_section("tests", lambda limit: run_tests(check.work, limit, run_bounded))
    check.run_section("stages", lambda limit: check.worker("gpu_check_stages", plan["stages"], limit))
    check.run_section("forge", lambda limit: check.worker("gpu_check_forge", plan["forge"], limit))
    runs = check.doc["sections"]["stages"].get("runs", [])
    try:
        check.doc["estimates"] = estimates(runs, defaults)
        check.doc["tiers"] = tier_table(runs)
    except Exception as e:  # the measurements are kept even if the summary breaks
        check.doc["notes"] = [f"estimates/tiers failed: {type(e).__name__}: {e}"[:500]]
    check.doc["complete"] = True
    check.doc["schema_errors"] = validate(check.doc, SCHEMA)
    path = check.write()
    if not args.keep_work:
        shutil.rmtree(check.work, ignore_errors=True)
    print(f"gpu check: {path} ({check.doc['wall_s']:.0f} s; sections: "
          + ", ".join(f"{k} {v['status']}" for k, v in check.doc["sections"].items()) + ")")
    for error in check.doc["schema_errors"]:
        print(f"schema: {error}", file=sys.stderr)
    return 1 if check.doc["schema_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
