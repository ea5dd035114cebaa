"""A small-settings forge of Qwen2.5-Coder-0.5B to 75% of its parameters, on the code domain.

Runs the real ``sentinel forge`` (heads + MLP channels toward ``--target-params`` with the
forge's default criterion, score balance and refit; distillation recovery) with settings sized for a 2-core CPU, and records the report's
baseline / control / forged rows with the wall time into bench/results/qwen_forge.json.
Extra arguments after ``--`` go to ``sentinel forge`` unchanged (later ones win).

    python bench/qwen_forge.py [--out-dir /tmp/qwen-forge] [-- --steps 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402

NAME = "qwen2.5-coder-0.5b"
SMALL = ["--domain", "code", "--target-params", "0.75", "--recovery", "distill",
         "--train", "lora", "--cycles", "2", "--steps", "8", "--batch-size", "2", "--seq-len", "128",
         "--train-tokens", "16384", "--eval-tokens", "2048", "--calib-windows", "8", "--lora-rank", "8"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/qwen-forge"), help="Forge output (not committed).")
    ap.add_argument("--out", type=Path, default=RESULTS / "qwen_forge.json")
    ap.add_argument("extra", nargs="*", help="More `sentinel forge` arguments (after --).")
    args = ap.parse_args()
    from sentinel.atomic import write_json

    cmd = [sys.executable, "-m", "sentinel.cli", "forge", NAME, *SMALL, *args.extra, "--out", str(args.out_dir),
           "--force"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=os.environ.copy(), text=True, capture_output=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sentinel forge failed after {seconds:.0f} s: {proc.stderr.strip()[-3000:]}")
    report = json.loads((args.out_dir / "report.json").read_text())
    result = {**run_facts(), "model": NAME, "command": ["sentinel", *cmd[3:]], "wall_seconds": round(seconds, 1),
              "rows": report["rows"], "report_seconds": report.get("seconds"),
              "settings": {k: report.get(k) for k in ("config", "data", "tokens") if k in report},
              "cycles": [{"cycle": c["cycle"], "target_params": c["pruning"]["target_params"],
                          "layout": c["pruning"]["layout_summary"], "one_shot_ppl": c["one_shot"]["ppl"],
                          "forged_ppl": c["forged"]["ppl"], "control_ppl": c["control"]["ppl"]}
                         for c in report["cycles"] if "pruning" in c]}
    write_json(args.out, result)
    for row in result["rows"]:
        print(f"{row['row']:>18}: PPL {row['ppl']:.3f}  params {row['params']:,}")
    print(f"{seconds / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
