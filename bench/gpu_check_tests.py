"""GPU check section: the CUDA-only tests (``@pytest.mark.cuda``), run by pytest, outcomes read from JUnit XML.

Only the test files that carry the marker are collected: collecting the whole suite
would import modules this machine may lack (mlx, gguf) for nothing.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "mark.cuda"


def cuda_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if MARK in p.read_text())


def read_junit(path: Path) -> tuple[dict, list[dict]]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    cases = []
    if not path.is_file():
        return counts, cases
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for child, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            node = case.find(child)
            if node is not None:
                outcome, message = name, (node.get("message") or node.text or "")[:500]
                break
        counts[outcome] += 1
        cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    return counts, cases


def run_tests(work: Path, limit: float, run_bounded) -> dict:
    files = cuda_test_files()
    if not files:
        return {"status": "skipped", "reason": f"no test file has {MARK}", "counts": None, "cases": []}
    junit = work / "cuda_tests.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rA",
           "--continue-on-collection-errors", f"--junitxml={junit}", *files]
    proc = run_bounded(cmd, limit, work / "cuda_tests.log")
    counts, cases = read_junit(junit)
    if proc["timed_out"]:
        status = "timeout"
    elif proc["returncode"] in (0, 5):  # 5: nothing collected
        status = "ok"
    else:
        status = "failed"
    return {"status": status, "files": files, "counts": counts, "cases": cases, "returncode": proc["returncode"],
            "timed_out": proc["timed_out"], "output_tail": proc["output_tail"]}
