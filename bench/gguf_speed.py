"""llama.cpp decode speed of a forged GGUF vs the unpruned one, and llama.cpp vs our MLX runtime on the same text.

SmolLM2-135M is pruned one-shot to a parameter target (`sentinel prune --target-params`, magnitude
criterion: speed depends on the sizes, not on which units go), both checkpoints are written as GGUF
(`convert_to_gguf`; the forged one becomes llama.cpp's `deci`), and llama.cpp (cyllama's CPU build)
decodes greedily from the same prompt, interleaved (unpruned, forged, ...) so machine noise hits both.
Then the forged model's greedy 32-token continuation is produced by llama.cpp (f32 GGUF) and by our MLX
runtime (fp32 folder from `convert_to_mlx`) from the same prompt ids, and compared token by token.

    python bench/gguf_speed.py [--target-params 0.75] [--outtype f16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402

PROMPT = "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n"


def decode_tps(llm, prompt: list[int], n: int) -> float:
    _, _, seconds = llm.timed_greedy(prompt, n)  # argmax inside llama.cpp, as llama-cli's greedy sampler
    return n / seconds


def mlx_greedy(folder: Path, prompt: list[int], n: int) -> list[int]:
    import runtime_mlx
    from mlx_lm.generate import stream_generate

    model, tokenizer = runtime_mlx.load(folder, lazy=False)
    return [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-params", type=float, default=0.75, help="fraction of the parameters kept")
    ap.add_argument("--outtype", default="f16", help="GGUF type timed (the text check always uses f32)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "gguf_speed.json")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from convert import convert_to_mlx
    from convert.gguf_llama import LlamaCpp
    from convert.gguf_verify import _llama_cpp_version, prompt_text
    from convert.to_gguf import convert_to_gguf
    from forge_cuda.pruning.command import run_prune
    from forge_cuda.pruning.options import PruneOptions
    from sentinel.atomic import read_json, write_json
    from sentinel.layout import read_layout
    from sentinel.cli.resolve import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = resolve_model("smollm2-135m")
        report = run_prune("smollm2-135m", base, tmp / "forged",
                           PruneOptions(criterion="magnitude", target_params=args.target_params, refit=False))
        layout = read_layout(read_json(tmp / "forged" / "config.json"))
        files = {k: convert_to_gguf(src, tmp / f"{k}-{args.outtype}.gguf", outtype=args.outtype)
                 for k, src in (("unpruned", base), ("forged", tmp / "forged"))}
        llms = {k: LlamaCpp(f, n_ctx=args.prompt_tokens + args.decode_tokens + 8) for k, f in files.items()}
        ids = llms["unpruned"].tokenize(prompt_text(), add_special=False)[: args.prompt_tokens]
        samples: dict[str, list[float]] = {k: [] for k in llms}
        for k in llms:  # warm-up
            decode_tps(llms[k], ids, args.decode_tokens)
        for _ in range(args.repeats):
            for k in llms:
                samples[k].append(decode_tps(llms[k], ids, args.decode_tokens))
        arch = {k: llm.meta("general.architecture") for k, llm in llms.items()}
        for llm in llms.values():
            llm.close()

        tokenizer = AutoTokenizer.from_pretrained(tmp / "forged")
        prompt = tokenizer(PROMPT)["input_ids"]
        text_check = {}
        for k, src in (("unpruned", base), ("forged", tmp / "forged")):
            with LlamaCpp(convert_to_gguf(src, tmp / f"{k}-f32.gguf", outtype="f32"), exact=True) as llm:
                cpp = llm.greedy(prompt, 32, stop_at_eog=True)
            ours = mlx_greedy(convert_to_mlx(src, tmp / f"{k}-mlx", dtype="float32"), prompt, 32)
            text_check[k] = {"llama_cpp": tokenizer.decode(cpp), "mlx": tokenizer.decode(ours),
                             "tokens_equal": cpp == ours, "text_equal": tokenizer.decode(cpp) == tokenizer.decode(ours),
                             "first_difference": next((i for i, (a, b) in enumerate(zip(cpp, ours)) if a != b),
                                                      None if len(cpp) == len(ours) else min(len(cpp), len(ours)))}
        med = {k: statistics.median(v) for k, v in samples.items()}
        sizes = {k: f.stat().st_size for k, f in files.items()}
        paired = statistics.median(f / u for u, f in zip(samples["unpruned"], samples["forged"]))
        result = {**run_facts(), "llama_cpp": _llama_cpp_version(), "model": "SmolLM2-135M-Instruct",
                  "target_params": args.target_params, "criterion": "magnitude (one-shot)",
                  "params": {"unpruned": report["params"]["before"], "forged": report["params"]["after"]},
                  "layout": layout.summary(), "outtype": args.outtype, "architecture": arch,
                  "prompt_tokens": len(ids), "decode_tokens": args.decode_tokens, "repeats": args.repeats,
                  "gguf_bytes": sizes, "byte_ratio": sizes["unpruned"] / sizes["forged"],
                  "decode_tps": samples, "decode_tps_median": med, "speedup": med["forged"] / med["unpruned"],
                  "paired_speedup": paired, "greedy_prompt": PROMPT, "greedy_tokens": 32,
                  "greedy_text_check": text_check}
    write_json(args.out, result)
    print(f"wrote {args.out}: byte ratio {result['byte_ratio']:.3f}, speed-up {result['speedup']:.3f}, "
          f"text equal {[v['text_equal'] for v in text_check.values()]}", file=sys.stderr)


if __name__ == "__main__":
    main()
