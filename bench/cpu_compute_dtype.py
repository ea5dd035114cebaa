"""fp16 weights on MLX's CPU backend: computed in float32 (the default) vs in the stored float16 (--keep-dtype).

One fp16 MLX folder, loaded twice through ``runtime_mlx.load`` (once upcast, once as stored),
greedy decoding with mlx-lm's ``stream_generate`` on the same prompt; one warm-up each, then
repeats in ABBA order so machine noise hits both alike. Reports median prompt and decode
tokens/s and the ratio float32 / float16.

    python bench/cpu_compute_dtype.py                        # converts smollm2-135m (fp16) into a temp folder
    python bench/cpu_compute_dtype.py --model MLX_FP16_FOLDER --repeats 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cpu_compute_dtype.json"


def one_run(model, tokenizer, prompt: list[int], tokens: int) -> tuple[float, float]:
    from mlx_lm.generate import stream_generate

    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=tokens):
        pass
    return last.prompt_tps, last.generation_tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="An fp16 MLX folder [default: convert smollm2-135m].")
    parser.add_argument("--repeats", type=int, default=4, help="Runs per side after the warm-up (even).")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="Prompt length in tokens.")
    parser.add_argument("--decode-tokens", type=int, default=32, help="Tokens decoded per run.")
    args = parser.parse_args()

    import mlx.core as mx

    import runtime_mlx
    from runtime_mlx.loader import compute_dtype
    from runtime_mlx.verify import prompt_ids

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            from convert import convert_to_mlx
            from sentinel.cli.resolve import resolve_model

            folder = convert_to_mlx(resolve_model("smollm2-135m"), Path(tmp) / "smollm2-135m-float16",
                                    dtype="float16")
        sides = {}
        for keep in (False, True):
            model, tokenizer = runtime_mlx.load(folder, lazy=False, keep_dtype=keep)
            mx.eval(model.parameters())
            tokenizer.eos_token_ids = set()  # every run decodes exactly --decode-tokens
            sides[compute_dtype(model)] = (model, tokenizer)
        prompt = prompt_ids(next(iter(sides.values()))[1], args.prompt_tokens)
        runs = {name: [] for name in sides}
        for name, (model, tokenizer) in sides.items():
            one_run(model, tokenizer, prompt[:16], 2)  # warm-up
        order = list(sides) + list(sides)[::-1]  # ABBA: two runs per side per round
        for _ in range(max(1, args.repeats // 2)):
            for name in order:
                model, tokenizer = sides[name]
                runs[name].append(one_run(model, tokenizer, prompt, args.decode_tokens))
    rows = {name: {"prompt_tps": statistics.median(r[0] for r in rs), "decode_tps": statistics.median(r[1] for r in rs),
                   "runs": [{"prompt_tps": p, "decode_tps": d} for p, d in rs]} for name, rs in runs.items()}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.system()} {platform.machine()}, MLX {mx.__version__} on "
                         f"{mx.default_device()}", "model": str(args.model or "smollm2-135m (fp16)"),
              "prompt_tokens": args.prompt_tokens, "decode_tokens": args.decode_tokens, "sides": rows,
              "decode_ratio_fp32_over_fp16": rows["float32"]["decode_tps"] / rows["float16"]["decode_tps"],
              "prompt_ratio_fp32_over_fp16": rows["float32"]["prompt_tps"] / rows["float16"]["prompt_tps"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name}: prompt {row['prompt_tps']:.1f} tok/s, decode {row['decode_tps']:.2f} tok/s")
    print(f"decode float32/float16: {result['decode_ratio_fp32_over_fp16']:.2f}x -> {RESULTS}")


if __name__ == "__main__":
    main()
