"""pytest plugin for the GPU check: one JSON line per test outcome, written as each test ends.

JUnit XML is written only when pytest exits, so a run killed at its time limit would
report nothing; these lines survive the kill. Enabled with ``-p bench.gpu_check_pytest``
and the file named by ``SENTINEL_GPU_CHECK_RESULTS``.
"""

from __future__ import annotations

import json
import os


def pytest_runtest_logreport(report):
    path = os.environ.get("SENTINEL_GPU_CHECK_RESULTS")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return  # one line per test: its call, or the setup/teardown that failed or skipped it
    message = None
    if report.outcome != "passed":
        longrepr = report.longrepr
        message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)[-1500:]
    outcome = {"passed": "passed", "failed": "failed" if report.when == "call" else "errors",
               "skipped": "skipped"}[report.outcome]
    with open(path, "a") as f:
        f.write(json.dumps({"name": report.nodeid, "outcome": outcome, "seconds": report.duration,
                            "message": message}) + "\n")
