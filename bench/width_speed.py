"""Measured prefill/decode speed of the forged (width-pruned) model vs the unpruned one, next to the byte ratio.

Both models are converted by our converter (float16) and loaded by our runtime
(``runtime_mlx.load``; on MLX's CPU backend it computes fp16 folders in float32),
and timed with ``sentinel verify``'s own run (``runtime_mlx.verify._run``: mlx-lm's
stream_generate, EOS disabled) on the same real prompt (Python's own source files).
One warm-up each, then repeats in ABBA order (unpruned, forged, forged, unpruned,
...) so machine noise and order effects hit both alike; medians and the median of
back-to-back pairs. Decode reads every weight and the KV cache once per token, so
the ideal speed-up is the byte ratio (bytes per decoded token, unpruned / forged);
goal from issue 10: efficiency = speed-up / byte ratio >= 0.9.

The forged folder is also opened with stock mlx-lm (``python -m mlx_lm generate
--trust-remote-code``, through the converter's ``model_file`` shim) and its greedy
text compared with our runtime's on the same folder.

    python bench/width_speed.py [--forged HF_FOLDER] [--repeats 10]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402
from bench.quant_vs_prune import busy_processes  # noqa: E402

STOCK_PROMPT = "def fibonacci(n):"


def stock_generate(folder: Path, max_tokens: int) -> dict:
    """Stock mlx-lm's CLI on the folder (greedy, raw prompt) vs our runtime's greedy text on the same folder."""
    from mlx_lm import generate

    import runtime_mlx

    cmd = [sys.executable, "-m", "mlx_lm", "generate", "--model", str(folder), "--trust-remote-code",
           "--prompt", STOCK_PROMPT, "--max-tokens", str(max_tokens), "--temp", "0", "--ignore-chat-template"]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - tic
    parts = proc.stdout.split("==========")
    text = parts[1].strip("\n") if len(parts) >= 3 else None
    model, tok = runtime_mlx.load(folder, keep_dtype=True)  # the stored dtype, as stock mlx-lm computes
    ours = generate(model, tok, prompt=STOCK_PROMPT, max_tokens=max_tokens)
    shown = shlex.join(["python"] + cmd[1:]).replace(str(folder), "FORGED_MLX_FOLDER")
    return {"command": shown, "returncode": proc.returncode, "seconds": seconds,
            "text": text, "ours_text": ours, "same_as_ours": text is not None and text.strip() == ours.strip(),
            "stderr_tail": proc.stderr.strip().splitlines()[-3:] if proc.returncode else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forged", type=Path,
                    help="forged HF folder (default: bench/width_distill.py's forged_0.75_distill)")
    ap.add_argument("--label", default="forged 0.75 distill")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--stock-tokens", type=int, default=24)
    ap.add_argument("--out", type=Path, default=RESULTS / "width_speed.json")
    args = ap.parse_args()

    import runtime_mlx
    from convert import convert_to_mlx
    from runtime_mlx import planner
    from runtime_mlx.loader import compute_dtype
    from runtime_mlx.verify import _run, backend, prompt_ids
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model
    from sentinel.paths import cache_root

    wall = time.perf_counter()
    forged = args.forged or cache_root() / "bench" / "width_distill" / "forged_0.75_distill"
    sources = {"unpruned": resolve_model("smollm2-135m"), "forged": forged}
    result = {**run_facts(), "busy_at_start": busy_processes(), "backend": backend(),
              "sources": {k: str(v) for k, v in sources.items()}, "label": args.label, "stored_dtype": "float16",
              "prompt_tokens": args.prompt_tokens, "decode_tokens": args.decode_tokens, "repeats": args.repeats,
              "order": "ABBA (unpruned, forged, forged, unpruned, ...) after one warm-up each",
              "goal": "efficiency = speed-up / byte ratio >= 0.9"}
    with tempfile.TemporaryDirectory(prefix="width_speed-") as tmp:
        folders = {k: convert_to_mlx(src, Path(tmp) / k, dtype="float16") for k, src in sources.items()}
        facts = {k: planner.model_facts(f) for k, f in folders.items()}
        loaded = {k: runtime_mlx.load(f, lazy=False) for k, f in folders.items()}
        result["compute_dtype"] = {k: compute_dtype(m) for k, (m, _) in loaded.items()}
        prompt = prompt_ids(loaded["unpruned"][1], args.prompt_tokens)
        for _, tok in loaded.values():
            tok.eos_token_ids = set()
        for model, tok in loaded.values():
            _run(model, tok, prompt[:16], 2)  # warm-up
        runs = {k: [] for k in loaded}
        for i in range(args.repeats):
            for k in (("unpruned", "forged") if i % 2 == 0 else ("forged", "unpruned")):
                model, tok = loaded[k]
                r = _run(model, tok, prompt, args.decode_tokens)
                if r["decode_tokens"] != args.decode_tokens:
                    raise RuntimeError(f"{k}: decoded {r['decode_tokens']} tokens, need {args.decode_tokens}")
                runs[k].append(r)
            print(f"repeat {i + 1}/{args.repeats}: decode " + ", ".join(
                f"{k} {runs[k][-1]['decode_tps']:.2f}" for k in runs) + " tok/s", flush=True)
        del loaded
        result["busy_at_end"] = busy_processes()
        result["stock_mlx_lm"] = stock_generate(folders["forged"], args.stock_tokens)
        result["model_file"] = (folders["forged"] / "sentinel_model.py").is_file()

    context = args.prompt_tokens + args.decode_tokens
    per_token = {k: planner.decode_bytes_per_token(f, context) for k, f in facts.items()}
    byte_ratio = per_token["unpruned"] / per_token["forged"]
    med = {phase: {k: statistics.median(r[f"{phase}_tps"] for r in runs[k]) for k in runs}
           for phase in ("prompt", "decode")}
    paired = {phase: statistics.median(f[f"{phase}_tps"] / u[f"{phase}_tps"]
                                       for f, u in zip(runs["forged"], runs["unpruned"])) for phase in med}
    speedup = {phase: med[phase]["forged"] / med[phase]["unpruned"] for phase in med}
    result.update({
        "weight_bytes": {k: f.weight_bytes for k, f in facts.items()},
        "kv_bytes_per_token": {k: f.kv_bytes_per_token for k, f in facts.items()},
        "bytes_per_decoded_token": per_token, "byte_ratio": byte_ratio,
        "weight_byte_ratio": facts["unpruned"].weight_bytes / facts["forged"].weight_bytes,
        "median_tps": med, "speedup": speedup, "paired_speedup": paired,
        "efficiency": speedup["decode"] / byte_ratio, "paired_efficiency": paired["decode"] / byte_ratio,
        "runs": {k: [{key: r[key] for key in ("prompt_tps", "decode_tps")} for r in v] for k, v in runs.items()},
        "wall_seconds": time.perf_counter() - wall, "complete": True})
    write_json(args.out, result)
    print(f"byte ratio {byte_ratio:.3f}; decode {med['decode']['unpruned']:.2f} -> {med['decode']['forged']:.2f} "
          f"tok/s, speed-up {speedup['decode']:.3f} (paired {paired['decode']:.3f}), efficiency "
          f"{result['efficiency']:.3f}; prefill {med['prompt']['unpruned']:.1f} -> {med['prompt']['forged']:.1f} "
          f"tok/s (x{speedup['prompt']:.3f}); stock mlx-lm rc {result['stock_mlx_lm']['returncode']}, "
          f"same text as ours: {result['stock_mlx_lm']['same_as_ours']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
