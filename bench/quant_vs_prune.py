"""Bytes vs perplexity: the base model and the forged (width-pruned, distilled) models, each fp16 / 8-bit / 4-bit.

Every model goes through OUR converter (``convert.convert_to_mlx``: float16, and MLX
affine quantization at 8 and 4 bits, group size 64) and OUR runtime loader
(``runtime_mlx.load_model``), and is scored on the SAME held-out eval windows as
bench/width_distill.py: the split settings are read from its JSON, the windows are
rebuilt with ``forge_cuda.data.build_splits`` and perplexity counts targets 1..T-1 of
each window, exactly like ``forge_cuda.evaluate.perplexity``. A torch fp32 pass over
the base model cross-checks the windows against the width bench's baseline row.

On MLX's CPU backend half-precision and quantized matmuls are slow: fp16 folders
compute in float32 (the runtime loader's CPU default); quantized folders are loaded
by the same loader, cast to float32 (scales, biases, dense layers) and dequantized
(``mx.dequantize`` in float32 through mlx-lm's ``dequantize_model``) so the matmuls
run in float32 BLAS on exactly the stored quantized values (``--quant-compute
dequant32``, ~20x faster here than MLX's CPU quantized kernel). A kernel check runs
the base model's quantized folders through MLX's own quantized matmul (float32 scales)
on the first ``--kernel-check-windows`` windows and records both perplexities.

    python bench/quant_vs_prune.py                       # base + forged_{0.9,0.75,0.6}_distill found on disk
    python bench/quant_vs_prune.py --extra oneshot=/tmp/q/pruned075 --eval-windows 2   # quick development run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402

FORMATS = {"fp16": None, "q8": 8, "q6": 6, "q4": 4}  # --formats picks; bench/bytes_vs_bpb.py uses q6 too
GROUP_SIZE = 64
_FP16 = "MLX CPU backend; fp16 folders compute in float32 (runtime_mlx's CPU default); quantized folders "
QUANT_NOTES = {
    "dequant32": _FP16 + "are loaded by runtime_mlx, cast to float32 and dequantized in float32 (mx.dequantize), "
                 "so matmuls run in float32 on exactly the stored quantized values; kernel_check compares MLX's "
                 "quantized matmul (float32 scales) on the first windows",
    "float32": _FP16 + "run MLX's quantized matmul with scales/biases and dense layers cast to float32",
    "stored": _FP16 + "compute in their stored dtype (fp16)"}


def busy_processes(seconds: float = 1.0, min_cpu: float = 0.2) -> list[dict]:
    """Other processes using at least ``min_cpu`` of a core over ``seconds`` (what else was running)."""
    def ticks() -> dict[int, tuple[int, str]]:
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                args = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[int(d)] = (int(fields[11]) + int(fields[12]), args.strip()[:160])
        return out

    if not Path("/proc").is_dir():
        return []
    hz = os.sysconf("SC_CLK_TCK")
    a = ticks()
    time.sleep(seconds)
    b = ticks()
    busy = [{"pid": pid, "cpu_cores": round((t - a[pid][0]) / hz / seconds, 2), "command": cmd}
            for pid, (t, cmd) in b.items() if pid in a and (t - a[pid][0]) / hz / seconds >= min_cpu]
    return sorted(busy, key=lambda p: -p["cpu_cores"])


def eval_windows(width_json: Path):
    """(settings, eval windows as int32 numpy [n, T], split stats) rebuilt exactly as bench/width_distill.py."""
    from forge_cuda.checkpoint import load_tokenizer
    from forge_cuda.data import build_splits
    from sentinel.cli.resolve import resolve_model

    width = json.loads(width_json.read_text())
    s = width["settings"]
    T = s["seq_len"]
    splits = build_splits("code", load_tokenizer(resolve_model("smollm2-135m")), seq_len=T, max_tokens={
        "train": s["train_tokens"], "calibration": s["calib_windows"] * T, "eval": s["eval_tokens"]})
    return width, splits


def mlx_perplexity(model, windows, batch_size: int = 4) -> dict:
    """Token NLL over targets 1..T-1 of each window (as forge_cuda.evaluate.perplexity), in float32."""
    import math

    import mlx.core as mx

    nll, tokens, tic = 0.0, 0, time.perf_counter()
    for i in range(0, len(windows), batch_size):
        x = mx.array(windows[i:i + batch_size])
        logits = model(x)[:, :-1].astype(mx.float32)
        targets = x[:, 1:]
        picked = mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        nll += (mx.logsumexp(logits, axis=-1) - picked).sum().item()
        tokens += targets.size
    return {"ppl": math.exp(nll / tokens), "loss": nll / tokens, "tokens": tokens,
            "seconds": time.perf_counter() - tic}


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("model*.safetensors"))


def measure(label: str, src: Path, fmt: str, windows, tmp: Path, quant_compute: str,
            check_windows: int = 0) -> dict:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from convert import convert_to_mlx
    from runtime_mlx.loader import compute_dtype, load_model

    tic = time.perf_counter()
    folder = convert_to_mlx(src, tmp / f"{label}-{fmt}", dtype="float16", quantize=FORMATS[fmt],
                            group_size=GROUP_SIZE)
    convert_s = time.perf_counter() - tic
    model = load_model(folder, lazy=False)
    check = None
    if FORMATS[fmt] and quant_compute != "stored":
        model.set_dtype(mx.float32)  # scales, biases and dense layers; packed weights stay as stored
        if quant_compute == "dequant32":
            if check_windows:
                kernel = mlx_perplexity(model, windows[:check_windows])
                check = {"windows": check_windows, "tokens": kernel["tokens"], "quantized_kernel_fp32_ppl":
                         kernel["ppl"], "quantized_kernel_seconds": kernel["seconds"]}
            from mlx_lm.utils import dequantize_model

            dequantize_model(model)
            mx.eval(model.parameters())
            if check:
                check["dequantized_fp32_ppl"] = mlx_perplexity(model, windows[:check_windows])["ppl"]
    config = json.loads((folder / "config.json").read_text())
    ev = mlx_perplexity(model, windows)
    row = {"model": label, "source": str(src), "format": fmt, "bits": FORMATS[fmt], "group_size": GROUP_SIZE,
           "weight_bytes": weight_bytes(folder),
           "dense_fallback": sorted(k for k, v in (config.get("quantization") or {}).items() if v is False),
           "compute_dtype": compute_dtype(model), "ppl": ev["ppl"], "loss": ev["loss"], "tokens": ev["tokens"],
           "eval_seconds": ev["seconds"], "convert_seconds": convert_s}
    if check:
        row["kernel_check"] = check
    if fmt == "fp16":
        row["params"] = sum(v.size for _, v in tree_flatten(model.parameters()))
    del model
    shutil.rmtree(folder)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width-json", type=Path, default=RESULTS / "width_distill.json",
                    help="bench/width_distill.py's results: the split settings are read from it")
    ap.add_argument("--forged", default="0.9,0.75,0.6",
                    help="targets of forged_<t>_<recovery> folders to include ('' for none)")
    ap.add_argument("--recoveries", default="distill")
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=HF_FOLDER", help="more models")
    ap.add_argument("--formats", default="fp16,q8,q4")
    ap.add_argument("--eval-windows", type=int, help="only the first N eval windows (development runs)")
    ap.add_argument("--quant-compute", choices=("dequant32", "float32", "stored"), default="dequant32",
                    help="quantized folders: dequantize to float32 / MLX quantized kernel with float32 scales / "
                         "as stored (fp16; very slow on CPU)")
    ap.add_argument("--kernel-check-windows", type=int, default=2, help="base model only; 0 = no check")
    ap.add_argument("--no-torch-check", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "quant_vs_prune.json")
    args = ap.parse_args()

    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model
    from sentinel.paths import cache_root

    wall = time.perf_counter()
    width, splits = eval_windows(args.width_json)
    windows = splits.eval[:args.eval_windows] if args.eval_windows else splits.eval
    base_row = next(r for r in width["rows"] if r["row"] == "baseline")
    models = [("base", resolve_model("smollm2-135m"))]
    keep = cache_root() / "bench" / "width_distill"
    for t in filter(None, args.forged.split(",")):
        for rec in args.recoveries.split(","):
            folder = keep / f"forged_{float(t):g}_{rec}"
            if (folder / "config.json").is_file():
                models.append((f"forged {float(t):g} {rec}", folder))
    models += [tuple(e.split("=", 1)) for e in args.extra]
    models = [(label, Path(src)) for label, src in models]

    result = {**run_facts(), "busy_at_start": busy_processes(),
              "eval": {"source": "code", "width_settings": width["settings"], "windows": int(windows.shape[0]),
                       "seq_len": int(windows.shape[1]), "all_windows": args.eval_windows is None,
                       "sha256": hashlib.sha256(windows.numpy().astype("int64").tobytes()).hexdigest(),
                       "split_stats": splits.stats["eval"]},
              "quant_compute": args.quant_compute, "compute_note": QUANT_NOTES[args.quant_compute],
              "group_size": GROUP_SIZE, "models": {label: str(src) for label, src in models}, "rows": []}
    if not args.no_torch_check:
        from forge_cuda.checkpoint import load_model
        from forge_cuda.evaluate import perplexity

        ev = perplexity(load_model(models[0][1]), windows, batch_size=4, progress=False)
        result["torch_fp32_base"] = {"ppl": ev["ppl"], "tokens": ev["tokens"], "width_bench_baseline_ppl":
                                     base_row["ppl"], "width_bench_baseline_tokens": base_row["eval_tokens"]}
        print(f"torch fp32 base: ppl {ev['ppl']:.3f} on {ev['tokens']} tokens (width bench: {base_row['ppl']:.3f} "
              f"on {base_row['eval_tokens']})", flush=True)
    np_windows = windows.numpy().astype("int32")
    with tempfile.TemporaryDirectory(prefix="quant_vs_prune-") as tmp:
        for label, src in models:
            for fmt in args.formats.split(","):
                row = measure(label, src, fmt, np_windows, Path(tmp), args.quant_compute,
                              args.kernel_check_windows if label == "base" else 0)
                result["rows"].append(row)
                write_json(args.out, result)
                print(f"{label:>22} {fmt}: {row['weight_bytes']:>12,} bytes  ppl {row['ppl']:8.3f}  "
                      f"({row['tokens']} tokens, {row['eval_seconds']:.0f} s, {row['compute_dtype']})", flush=True)
    result.update(busy_at_end=busy_processes(), wall_seconds=time.perf_counter() - wall, complete=True)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
