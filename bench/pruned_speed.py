"""Decode speed-up of a head-pruned model over the unpruned one, against the byte ratio.

Decode reads every weight and the KV cache once per token, so removing heads
should speed decode up by (bytes per token unpruned) / (bytes per token pruned).
We prune SmolLM2-135M one-shot (`sentinel prune`, magnitude criterion: the
choice of heads does not change the sizes), convert both with our converter,
and time mlx-lm's stream_generate on each, interleaved (unpruned, pruned, ...)
so machine noise hits both alike. Efficiency = speed-up / byte ratio (goal >= 0.9).

    python bench/pruned_speed.py [--level 0.5] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, real_mlx, run_facts  # noqa: E402


def decode_tps(model, tokenizer, prompt: list[int], tokens: int) -> float:
    from mlx_lm.generate import stream_generate

    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=tokens):
        pass
    assert last.generation_tokens == tokens
    return last.generation_tps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=float, default=0.5, help="fraction of query heads removed")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "pruned_speed.json")
    args = ap.parse_args()

    from forge_cuda.pruning.command import run_prune
    from forge_cuda.pruning.options import PruneOptions
    import runtime_mlx
    from runtime_mlx import planner
    from runtime_mlx.verify import prompt_ids
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report = run_prune("smollm2-135m", resolve_model("smollm2-135m"), tmp / "pruned-hf",
                           PruneOptions(criterion="magnitude", level=args.level, refit=False))
        folders = {"unpruned": real_mlx(tmp, args.dtype),
                   "pruned": real_mlx(tmp, args.dtype, src=tmp / "pruned-hf", name="pruned")}
        facts = {k: planner.model_facts(f) for k, f in folders.items()}
        loaded = {k: runtime_mlx.load(f, lazy=False) for k, f in folders.items()}
        prompt = prompt_ids(loaded["unpruned"][1], args.prompt_tokens)
        for _, tok in loaded.values():
            tok.eos_token_ids = set()
        runs = {k: [] for k in loaded}
        for k, (model, tok) in loaded.items():
            decode_tps(model, tok, prompt, 2)  # warm-up
        for _ in range(args.repeats):
            for k, (model, tok) in loaded.items():
                runs[k].append(decode_tps(model, tok, prompt, args.decode_tokens))
    context = args.prompt_tokens + args.decode_tokens
    per_token = {k: planner.decode_bytes_per_token(f, context) for k, f in facts.items()}
    byte_ratio = per_token["unpruned"] / per_token["pruned"]
    med = {k: statistics.median(v) for k, v in runs.items()}
    paired = statistics.median(p / u for p, u in zip(runs["pruned"], runs["unpruned"]))
    result = {**run_facts(), "model": "smollm2-135m", "dtype": args.dtype, "prune_level": args.level,
              "criterion": "magnitude", "layout": report["layout_summary"], "query_heads": report["query_heads"],
              "weight_bytes": {k: f.weight_bytes for k, f in facts.items()},
              "kv_bytes_per_token": {k: f.kv_bytes_per_token for k, f in facts.items()},
              "bytes_per_decoded_token": per_token, "byte_ratio": byte_ratio,
              "prompt_tokens": args.prompt_tokens, "decode_tokens": args.decode_tokens, "repeats": args.repeats,
              "decode_tps_runs": runs, "decode_tps_median": med, "speedup": med["pruned"] / med["unpruned"],
              "paired_speedup": paired, "efficiency": (med["pruned"] / med["unpruned"]) / byte_ratio,
              "paired_efficiency": paired / byte_ratio, "goal": "efficiency >= 0.9"}
    write_json(args.out, result)
    print(f"byte ratio {byte_ratio:.3f}, decode {med['unpruned']:.2f} -> {med['pruned']:.2f} tok/s, speed-up "
          f"{result['speedup']:.3f} (paired {paired:.3f}), efficiency {result['efficiency']:.3f} "
          f"(paired {result['paired_efficiency']:.3f})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
