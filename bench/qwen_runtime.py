"""Qwen2.5-Coder-0.5B on the MLX side: `sentinel verify`, `sentinel plan`, planner vs measured peak.

Runs the real CLIs on the float32 MLX folder (converted by bench/qwen_parity.py, or here
when missing) and records their output and wall times, then checks the planner against
the measured peak at three contexts with bench/planner_error.py's own check (goal: within
10%). Writes bench/results/qwen_runtime.json.

    python bench/qwen_runtime.py [--contexts 64,256,512]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts, sentinel as run_cli  # noqa: E402
from bench.planner_error import check  # noqa: E402

NAME = "qwen2.5-coder-0.5b"


def sentinel(*args: str) -> tuple[float, str]:
    seconds, stdout = run_cli(*args)
    return round(seconds, 1), stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", default="64,256,512", help="Contexts for the planner check.")
    ap.add_argument("--decode-tokens", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS / "qwen_runtime.json")
    args = ap.parse_args()
    from sentinel.atomic import write_json
    from sentinel.paths import mlx_dir

    result: dict = {**run_facts(), "model": NAME, "seconds": {}}
    folder = mlx_dir() / f"{NAME}-float32"
    if not (folder / "config.json").is_file():
        _, hf = sentinel("models", "pull", NAME)
        result["seconds"]["convert_float32"], _ = sentinel("convert", hf.strip().splitlines()[-1], "--to", "mlx",
                                                           "--dtype", "float32", "--out", str(folder))
    result["mlx_folder"] = str(folder)

    with tempfile.TemporaryDirectory() as tmp:
        result["seconds"]["verify"], out = sentinel("verify", str(folder), "--out", tmp)
        result["verify_stdout"] = out.strip().splitlines()
        result["verify"] = json.loads((Path(tmp) / "verify.json").read_text())
    result["seconds"]["plan"], out = sentinel("plan", str(folder), "--target", "macbook-air-8gb,macbook-pro-16gb",
                                              "--context", "2048,8192,32768", "--dtype", "float16")
    result["plan_stdout"] = out.strip().splitlines()

    t0 = time.perf_counter()
    planner = check(folder, [int(c) for c in args.contexts.split(",")], args.decode_tokens)
    result["seconds"]["planner_check"] = round(time.perf_counter() - t0, 1)
    result["planner_error"] = {**planner, "goal": "abs error <= 10% of the measured peak",
                               "ok": planner["max_abs_error"] <= 0.10}
    write_json(args.out, result)
    for line in result["verify_stdout"] + result["plan_stdout"]:
        print(line)
    for r in planner["rows"]:
        print(f"ctx {r['context']}: measured {r['measured_bytes'] / 2**20:.1f} MiB, predicted "
              f"{r['predicted_bytes'] / 2**20:.1f} MiB, error {r['relative_error']:+.2%}")
    print(f"seconds: {result['seconds']}; wrote {args.out}")


if __name__ == "__main__":
    main()
