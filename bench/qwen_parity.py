"""Qwen2.5-Coder-0.5B end to end: pull -> our torch load vs transformers' GGUF load -> MLX vs torch.

Checks (fp32 throughout):
- our loader (forge_cuda.checkpoint.load_model) on the pulled folder vs transformers'
  own ``from_pretrained(gguf_file=...)`` on the verified GGUF: max |logit diff| <= 1e-4;
- ``sentinel convert DIR --to mlx --dtype float32`` vs torch: max |logit diff| <= 1e-3,
  and the same 32-token greedy reply (token ids and text).
Every step's wall time is recorded; ``--fresh-pull`` also times a pull into an empty cache
(downloads ~480 MB of wheels).

    python bench/qwen_parity.py [--fresh-pull]   # -> bench/results/qwen_parity.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402

NAME = "qwen2.5-coder-0.5b"
CHAT = "Write a Python function that returns the n-th Fibonacci number."
RAW = "def quicksort(items):\n    "
GOALS = {"ours_vs_gguf_max_abs": 1e-4, "mlx_vs_torch_max_abs": 1e-3}


def sentinel(*args: str, env: dict | None = None) -> tuple[float, str]:
    """Run the real CLI; returns (wall seconds, stdout's last line)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", *args], capture_output=True, text=True,
                          env=env or os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"sentinel {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0, proc.stdout.strip().splitlines()[-1]


def fresh_pull() -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, SENTINEL_HOME=home)
        seconds, path = sentinel("models", "pull", NAME, env=env)
        gguf = Path(home) / "gguf" / f"{NAME}.gguf"
        return {"seconds": round(seconds, 1), "gguf_bytes": gguf.stat().st_size,
                "folder_bytes": sum(f.stat().st_size for f in Path(path).iterdir())}


def torch_logits(model, prompts: list[list[int]]):
    import torch

    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].float().numpy() for ids in prompts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh-pull", action="store_true", help="Also time a pull into an empty cache.")
    ap.add_argument("--tokens", type=int, default=32, help="Greedy tokens compared between torch and MLX.")
    ap.add_argument("--out", type=Path, default=RESULTS / "qwen_parity.json")
    args = ap.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from forge_cuda.checkpoint import load_model, load_tokenizer
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import EMBEDDED, gguf_dir, gguf_path
    from sentinel.paths import mlx_dir

    result: dict = {**run_facts(), "model": NAME, "goals": GOALS, "seconds": {}}
    if args.fresh_pull:
        result["fresh_pull"] = fresh_pull()
    seconds, folder = sentinel("models", "pull", NAME)
    folder = Path(folder)
    result["seconds"]["pull_cached"] = round(seconds, 2)

    tok = load_tokenizer(folder)
    chat_ids = list(tok.apply_chat_template([{"role": "user", "content": CHAT}], add_generation_prompt=True,
                                            return_dict=False))
    prompts = [chat_ids, list(tok.encode(RAW))]
    result["prompt_tokens"] = [len(p) for p in prompts]

    gguf = gguf_path(EMBEDDED[NAME])
    assert gguf.parent == gguf_dir()
    t0 = time.perf_counter()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    result["seconds"]["transformers_gguf_load"] = round(time.perf_counter() - t0, 2)
    want = torch_logits(reference, prompts)
    del reference

    t0 = time.perf_counter()
    ours = load_model(folder, dtype=torch.float32)
    result["seconds"]["ours_load"] = round(time.perf_counter() - t0, 2)
    got = torch_logits(ours, prompts)
    result["ours_vs_gguf_max_abs"] = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
    result["params"] = sum(p.numel() for p in ours.parameters())

    t0 = time.perf_counter()
    with torch.no_grad():
        out = ours.generate(torch.tensor([chat_ids]), max_new_tokens=args.tokens, do_sample=False)
    torch_ids = out[0, len(chat_ids):].tolist()
    result["seconds"]["torch_greedy"] = round(time.perf_counter() - t0, 2)
    del ours

    mlx_out = mlx_dir() / f"{NAME}-float32"
    seconds, _ = sentinel("convert", str(folder), "--to", "mlx", "--dtype", "float32", "--out", str(mlx_out),
                          "--force")
    result["seconds"]["convert_float32"] = round(seconds, 1)
    result["mlx_folder"] = str(mlx_out)

    import mlx.core as mx
    from mlx_lm.generate import stream_generate

    from runtime_mlx import load

    t0 = time.perf_counter()
    model, mtok = load(mlx_out)
    result["seconds"]["mlx_load"] = round(time.perf_counter() - t0, 2)
    mlx_logits = [np.array(model(mx.array([ids]))[0].astype(mx.float32)) for ids in prompts]
    result["mlx_vs_torch_max_abs"] = max(float(np.abs(a - b).max()) for a, b in zip(mlx_logits, got))
    result["mlx_vs_torch_top1_agreement"] = float(np.mean(np.concatenate(
        [a.argmax(-1) == b.argmax(-1) for a, b in zip(mlx_logits, got)])))
    t0 = time.perf_counter()
    mlx_ids = [r.token for r in stream_generate(model, mtok, chat_ids, max_tokens=args.tokens)]
    result["seconds"]["mlx_greedy"] = round(time.perf_counter() - t0, 2)
    # Both end with the EOS token when the reply stops before --tokens (mlx-lm's last response carries it).
    result["greedy"] = {"tokens": args.tokens, "torch_ids": torch_ids, "mlx_ids": mlx_ids,
                        "equal": torch_ids == mlx_ids,
                        "torch_text": tok.decode(torch_ids, skip_special_tokens=True),
                        "mlx_text": tok.decode(mlx_ids, skip_special_tokens=True)}
    result["ok"] = (result["ours_vs_gguf_max_abs"] <= GOALS["ours_vs_gguf_max_abs"]
                    and result["mlx_vs_torch_max_abs"] <= GOALS["mlx_vs_torch_max_abs"]
                    and result["greedy"]["equal"])
    write_json(args.out, result)
    print(f"ours vs transformers GGUF: max |diff| {result['ours_vs_gguf_max_abs']:.3g}; MLX vs torch: "
          f"{result['mlx_vs_torch_max_abs']:.3g}; greedy {args.tokens} equal: {result['greedy']['equal']}")
    print(f"reply: {result['greedy']['mlx_text']!r}")
    print(f"seconds: {result['seconds']}; wrote {args.out}")
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
