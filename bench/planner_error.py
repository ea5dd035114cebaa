"""Planner vs measured peak memory: `sentinel verify`'s measurement against runtime_mlx.planner.

Two models: the embedded SmolLM2-135M converted to fp32 (where weights dominate
the peak) and a tiny random llama at long contexts (where KV cache and prefill
activations dominate), so both halves of the formula are checked. Errors are
(predicted - measured) / measured, on the whole peak and on the part above the
weights.

    python bench/planner_error.py [--contexts 64,256,512] [--tiny-contexts 1024,2048,4096]
    python bench/planner_error.py --model qwen2.5-coder-0.5b --tiny-contexts "" --out bench/results/qwen_planner_error.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, real_mlx, run_facts  # noqa: E402


def tiny_mlx(tmp: Path) -> Path:
    """A random 2-layer llama (hidden 128, 8 query / 2 KV heads of 16) with a small real tokenizer."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tiny import tiny_model
    from tiny_tokenizer import tiny_tokenizer

    from convert import convert_to_mlx
    from forge_cuda.checkpoint import save_model

    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_attention_heads=8,
                       num_key_value_heads=2, head_dim=16, max_position_embeddings=8192)
    save_model(model, tmp / "tiny-hf", tokenizer=tok)
    return convert_to_mlx(tmp / "tiny-hf", tmp / "tiny-llama-float32", dtype="float32")


def check(folder: Path, contexts: list[int], decode_tokens: int) -> dict:
    from runtime_mlx import planner
    from runtime_mlx.verify import backend, measure

    facts = planner.model_facts(folder)
    measured = measure(folder, contexts, decode_tokens, repeats=1, progress=True)
    rows = []
    for r in measured["contexts"]:
        pred = planner.predict_peak(facts, r["context"] + decode_tokens, backend(), prompt=r["context"])
        rows.append({"context": r["context"], "decode_tokens": decode_tokens, "measured_bytes": r["peak_bytes"],
                     "predicted_bytes": pred["total"], "predicted_components": pred,
                     "relative_error": (pred["total"] - r["peak_bytes"]) / r["peak_bytes"],
                     "above_weights_relative_error": (pred["total"] - r["peak_bytes"])
                     / max(1, r["peak_bytes"] - facts.weight_bytes)})
    return {"model": folder.name, "weight_bytes": facts.weight_bytes, "backend": backend(), "rows": rows,
            "max_abs_error": max(abs(r["relative_error"]) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="Embedded model name or HF folder (converted to fp32).")
    ap.add_argument("--mlx", type=Path, default=None, help="Use this converted MLX folder instead of converting.")
    ap.add_argument("--contexts", default="64,256,512")
    ap.add_argument("--tiny-contexts", default="1024,2048,4096", help="Empty: skip the tiny long-context model.")
    ap.add_argument("--decode-tokens", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS / "planner_error.json")
    args = ap.parse_args()
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name = Path(args.model).name
        folder = args.mlx or real_mlx(tmp, src=resolve_model(args.model), name=name)
        real = check(folder, [int(c) for c in args.contexts.split(",")], args.decode_tokens)
        real["model"] = f"{name} (converted by sentinel, float32)"
        tiny = (check(tiny_mlx(tmp), [int(c) for c in args.tiny_contexts.split(",")], args.decode_tokens)
                if args.tiny_contexts else None)
    result = {**run_facts(), "goal": "abs error <= 10% of the measured peak", "real": real,
              **({"tiny": tiny} if tiny else {})}
    write_json(args.out, result)
    for name in [n for n in ("real", "tiny") if n in result]:
        for r in result[name]["rows"]:
            print(f"{name} ctx {r['context']}: measured {r['measured_bytes'] / 2**20:.1f} MiB, predicted "
                  f"{r['predicted_bytes'] / 2**20:.1f} MiB, error {r['relative_error']:+.2%}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
