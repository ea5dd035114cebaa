"""A small-settings forge of Qwen2.5-Coder-0.5B to 65% of its parameters, on the code domain.

Runs the real ``sentinel forge`` (the domain vocabulary first, then heads + MLP channels toward
``--target-params`` with the forge's default criterion, score balance and refit; block-local +
distillation recovery on a token ``--budget``, all parameters trained at lr 1e-4: the recipe's
5e-4 was measured on SmolLM2-135M only) with settings sized for a 2-core CPU, and records the
report's baseline / control / forged rows (bits per byte, PPL, the out-of-domain rows) with the
wall time into bench/results/qwen_forge_vocab.json. Extra arguments after ``--`` go to
``sentinel forge`` unchanged (later ones win); bench/results/qwen_forge.json is the earlier
0.75 LoRA run without the vocabulary unit (``-- --vocab keep --target-params 0.75 ...``).

    python bench/qwen_forge.py [--out-dir /tmp/qwen-forge] [-- --budget 12k]
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
SMALL = ["--domain", "code", "--target-params", "0.65", "--vocab", "domain", "--recovery", "distill",
         "--train", "full", "--lr", "1e-4", "--steps", "4", "--budget", "6k", "--batch-size", "4",
         "--seq-len", "128", "--train-tokens", "65536", "--eval-tokens", "4096", "--calib-windows", "8"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/qwen-forge"), help="Forge output (not committed).")
    ap.add_argument("--out", type=Path, default=RESULTS / "qwen_forge_vocab.json")
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
              "ood_rows": report.get("ood_rows"), "schedule": report.get("schedule"),
              "stage0": {k: report["cycles"][0]["forged"].get(k) for k in ("bpb", "ppl")},
              "cycles": [{"cycle": c["cycle"], "target_params": c["pruning"]["target_params"],
                          "layout": c["pruning"]["layout_summary"], "vocab": c["pruning"].get("vocab"),
                          **{f"{k}_{m}": c[k].get(m) for k in ("one_shot", "forged", "control") if k in c
                             for m in ("ppl", "bpb")},
                          "after_blocklocal_bpb": c.get("after_blocklocal", {}).get("bpb"), "curve": c.get("curve")}
                         for c in report["cycles"] if "pruning" in c]}
    write_json(args.out, result)
    for row in result["rows"]:
        print(f"{row['row']:>18}: {row.get('bpb') or float('nan'):.4f} bits/byte  PPL {row['ppl']:.3f}  "
              f"params {row['params']:,}")
    print(f"{seconds / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
