"""The demo's question to forged models in our MLX runtime: is the greedy answer code, without a loop?

Issue 19's acceptance: "the forged 0.75 model's greedy answer to the demo's prompt is code (no
repeated phrase), in our MLX runtime". Each folder goes through the product's own CLI:
``sentinel convert --to mlx --dtype float16`` then ``sentinel generate --temp 0``. An answer is
code when it holds a ``def`` and a ``return``; it loops when one line of at least 8 characters
comes back (the answer starts over). The base model answers too, for comparison.

    python bench/forged_answer.py --model "forged KD only=<forge out>/model" [--model ...]
    # -> bench/results/forged_answer.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts, sentinel  # noqa: E402
from bench.vocab_generate import has_code  # noqa: E402

PROMPT = "Write a Python function that returns the n-th Fibonacci number."  # scripts/demo.sh's question


def repeated_line(text: str, min_chars: int = 8, times: int = 2) -> str | None:
    """A line (stripped, >= min_chars) that occurs ``times`` or more: the signature of a greedy loop."""
    counts = Counter(line.strip() for line in text.splitlines() if len(line.strip()) >= min_chars)
    line, n = counts.most_common(1)[0] if counts else (None, 0)
    return line if n >= times else None


def answer(label: str, folder: str, tmp: Path, tokens: int) -> dict:
    mlx = tmp / label.replace(" ", "_").replace("+", "and")
    convert_s, _ = sentinel("convert", folder, "--to", "mlx", "--dtype", "float16", "--out", str(mlx), "--force")
    generate_s, text = sentinel("generate", str(mlx), "--max-tokens", str(tokens), "--temp", "0", "--prompt", PROMPT)
    loop = repeated_line(text)
    return {"model": label, "folder": folder, "text": text, "is_code": has_code(text), "repeated_line": loop,
            "passes": has_code(text) and loop is None, "seconds": {"convert": round(convert_s, 1),
                                                                    "generate": round(generate_s, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                    help="a label and a model folder (or an embedded name); repeatable")
    ap.add_argument("--base", default="smollm2-135m", help="the base model, answered too ('' for none)")
    ap.add_argument("--tokens", type=int, default=80, help="greedy tokens (the demo's --max-tokens)")
    ap.add_argument("--out", type=Path, default=RESULTS / "forged_answer.json")
    args = ap.parse_args()
    from sentinel.atomic import write_json

    pairs = [("base", args.base)] if args.base else []
    pairs += [tuple(m.split("=", 1)) for m in args.model]
    result = {**run_facts(), "prompt": PROMPT, "tokens": args.tokens, "runtime": "sentinel generate (MLX, float16)",
              "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, folder in pairs:
            row = answer(label, folder, Path(tmp), args.tokens)
            result["rows"].append(row)
            write_json(args.out, result)
            print(f"--- {label}: code {row['is_code']}, repeated line {row['repeated_line']!r}\n{row['text']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
