"""Our runtime vs stock mlx-lm on the same unpruned MLX weights: prefill and decode tokens/s.

Both sides run mlx-lm's own ``stream_generate`` on one folder (ours builds
runtime_mlx classes, stock builds mlx-lm's), greedy, same prompt tokens; one
warm-up each, then repeats interleaved in ABBA order (ours, stock, stock, ours, ...) so
machine noise and order effects hit both alike. Reports medians and the ratio ours/stock (goal >= 0.98).

    python bench/runtime_speed.py                      # converts smollm2-135m (fp32) into a temp folder
    python bench/runtime_speed.py --model MLX_FOLDER --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "runtime_speed.json"


def stock_load(folder: Path):
    """Stock mlx-lm on the folder; the top-level rope_theta it needs (it ignores rope_parameters)."""
    from mlx_lm.utils import load, load_config

    cfg = load_config(folder)
    extra = {"model_file": None}
    if "rope_theta" not in cfg and cfg.get("rope_parameters", {}).get("rope_theta"):
        extra["rope_theta"] = cfg["rope_parameters"]["rope_theta"]
    return load(str(folder), model_config=extra)


def one_run(model, tokenizer, prompt: list[int], gen_tokens: int) -> tuple[float, float]:
    from mlx_lm.generate import stream_generate

    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=gen_tokens):
        pass
    if last.generation_tokens != gen_tokens:
        raise RuntimeError(f"stopped after {last.generation_tokens} tokens; need {gen_tokens}")
    return last.prompt_tps, last.generation_tps


def bench(folder: Path, prompt_tokens: int, gen_tokens: int, repeats: int) -> dict:
    import mlx.core as mx
    import mlx_lm

    import runtime_mlx

    sides = {"ours": runtime_mlx.load(folder, lazy=False), "stock": stock_load(folder)}
    tokenizer = sides["ours"][1]
    text = open(__file__).read()  # a fixed, real text: this script
    prompt = list(tokenizer.encode(text))[:prompt_tokens]
    # Never stop early: the EOS tokens are removed from both tokenizers' stop sets.
    for _, tok in sides.values():
        tok._eos_token_ids = set()
    runs = {name: {"prefill": [], "decode": []} for name in sides}
    for name, (model, tok) in sides.items():
        one_run(model, tok, prompt, gen_tokens)  # warm-up
    for i in range(repeats):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))  # ABBA: order effects cancel
        for name in order:
            model, tok = sides[name]
            p, d = one_run(model, tok, prompt, gen_tokens)
            runs[name]["prefill"].append(p)
            runs[name]["decode"].append(d)
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()}
    return {
        "model": str(folder), "prompt_tokens": len(prompt), "generation_tokens": gen_tokens, "repeats": repeats,
        "median_tps": med, "runs_tps": runs,
        "ratio_decode": med["ours"]["decode"] / med["stock"]["decode"],
        "ratio_prefill": med["ours"]["prefill"] / med["stock"]["prefill"],
        # Median of back-to-back pairs: robust to load that drifts during the run (shared machines).
        "paired_ratio_decode": statistics.median(o / s for o, s in zip(runs["ours"]["decode"], runs["stock"]["decode"])),
        "paired_ratio_prefill": statistics.median(o / s for o, s in zip(runs["ours"]["prefill"],
                                                                        runs["stock"]["prefill"])),
        "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "device": str(mx.default_device()),
        "machine": f"{platform.system()} {platform.machine()}", "date": datetime.date.today().isoformat(),
    }


def default_folder(tmp: Path) -> Path:
    from convert import convert_to_mlx
    from sentinel.cli.resolve import resolve_model

    return convert_to_mlx(resolve_model("smollm2-135m"), tmp / "smollm2-135m-float32", dtype="float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="MLX folder (default: smollm2-135m converted to fp32)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from sentinel.atomic import write_json

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or default_folder(Path(tmp))
        result = bench(folder, args.prompt_tokens, args.gen_tokens, args.repeats)
    if args.model is None:
        result["model"] = "smollm2-135m (converted by sentinel, float32)"
    write_json(args.out, result)
    m = result["median_tps"]
    print(f"decode  ours {m['ours']['decode']:.2f} tok/s  stock {m['stock']['decode']:.2f} tok/s  "
          f"ratio {result['ratio_decode']:.3f} (paired {result['paired_ratio_decode']:.3f})")
    print(f"prefill ours {m['ours']['prefill']:.2f} tok/s  stock {m['stock']['prefill']:.2f} tok/s  "
          f"ratio {result['ratio_prefill']:.3f} (paired {result['paired_ratio_prefill']:.3f})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
