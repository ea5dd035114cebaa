"""GPU check section: the CUDA-only tests (``@pytest.mark.cuda``), run by pytest, one outcome line per test.

Only the test files that carry the marker are collected: collecting the whole suite
would import modules this machine may lack (mlx, gguf) for nothing. Outcomes come
from bench/gpu_check_pytest.py as each test ends, so a run stopped at its limit
still reports the tests it finished.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "mark.cuda"


def cuda_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if MARK in p.read_text())


def read_results(path: Path) -> tuple[dict, list[dict]]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    for case in cases:
        counts[case["outcome"]] += 1
    return counts, cases


def run_tests(work: Path, limit: float, run_bounded) -> dict:
    files = cuda_test_files()
    if not files:
        return {"status": "skipped", "reason": f"no test file has {MARK}", "counts": None, "cases": []}
    results = work / "cuda_tests.jsonl"
    results.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-p", "bench.gpu_check_pytest",
           "-rA", "--continue-on-collection-errors", *files]
    env = dict(os.environ, SENTINEL_GPU_CHECK_RESULTS=str(results))
    proc = run_bounded(cmd, limit, work / "cuda_tests.log", env=env)
    counts, cases = read_results(results)
    if proc["timed_out"]:
        status = "timeout"
    elif proc["returncode"] in (0, 5):  # 5: nothing collected
        status = "ok"
    else:
        status = "failed"
    return {"status": status, "files": files, "counts": counts, "cases": cases, "returncode": proc["returncode"],
            "timed_out": proc["timed_out"], "output_tail": proc["output_tail"]}
