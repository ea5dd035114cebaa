r"""Bytes vs bits per byte: a base model and forged models, each fp16 / q8 / q6 / q4, on the same documents.

Every model goes through OUR converter (``convert.convert_to_mlx``: float16, and MLX
affine quantization at 8, 6 and 4 bits, group size 64) and OUR runtime loader
(``runtime_mlx.load_model``); quantized folders are dequantized to float32 after
loading (bench/quant_vs_prune.py's ``dequant32``: exactly the stored values, float32
BLAS). Each model reads the held-out documents through its OWN tokenizer (a forged
folder with a trimmed vocabulary ships its own), so the score is bits per byte:
total NLL in bits over the UTF-8 bytes of the predicted tokens (targets 1..T-1 of
each window, as ``forge_cuda.evaluate.perplexity(..., token_bytes=...)`` counts them).

The documents are the forge's: the eval split of the domain selected with the BASE
tokenizer under the settings of a results JSON (default bench/results/recovery_budget.json:
seq_len, eval_tokens), then windowed per tokenizer with ``forge_cuda.data.eval_windows``
(forge_cuda/track_data.py ``retokenized``), so rows line up with that bench's bpb.
A row is on the Pareto front when no other row has fewer-or-equal bytes and
lower-or-equal bpb (strictly better in one). Resumable: rows already in --out with
the same settings are kept and skipped.

    W=${SENTINEL_HOME:-$HOME/.cache/sentinel}/bench/recovery_budget   # bench/recovery_budget.py's forges
    python bench/bytes_vs_bpb.py --base smollm2-135m --forged "forged KD only=$W/forged_KD_only/model" \
        --forged "forged block-local + KD=$W/forged_block-local_and_KD/model"
    python bench/bytes_vs_bpb.py --base /tmp/tiny --forged small=/tmp/tiny-forged --settings /tmp/s.json \
        --eval-tokens 2048 --out /tmp/bytes.json                      # a quick development run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402
from bench.quant_vs_prune import FORMATS, GROUP_SIZE, QUANT_NOTES, busy_processes, measure  # noqa: E402

QUANT_COMPUTE = "dequant32"
SEED = 0  # the forge's default seed (it only shuffles training windows; recorded for the record)


def read_settings(path: Path, eval_tokens: int | None, domain: str | None) -> dict:
    """The eval settings of a results JSON (its "settings"), optionally capped to fewer eval tokens."""
    r = json.loads(path.read_text())
    s = r["settings"]
    cap = s["eval_tokens"] if eval_tokens is None else min(eval_tokens, s["eval_tokens"])
    return {"domain": domain or r.get("domain") or s.get("domain") or "code",
            "seq_len": s["seq_len"], "eval_tokens": cap, "seed": SEED, "train_tokens": s.get("train_tokens"),
            "calibration_tokens": s["calib_windows"] * s["seq_len"] if "calib_windows" in s else None,
            "group_size": GROUP_SIZE, "quant_compute": QUANT_COMPUTE}


def eval_documents(settings: dict, base_tokenizer):
    """The forge's held-out documents: ``build_splits(domain, base tokenizer, ...).eval_documents``.

    ``forge_cuda.data.eval_set`` selects them exactly as build_splits does (same split, same
    order, same cut) without tokenizing the train and calibration splits, which never change them.
    """
    from forge_cuda.data import eval_set

    return eval_set(settings["domain"], base_tokenizer, settings["seq_len"], settings["eval_tokens"]).documents


def documents_sha256(documents) -> str:
    h = hashlib.sha256()
    for d in documents:
        h.update(d.doc_id.encode() + b"\0" + d.text.encode() + b"\0")
    return h.hexdigest()


def model_data(src: Path, documents, seq_len: int) -> dict:
    """The model's own tokenizer: its windows of the documents, bytes predicted, params, vocabulary."""
    from forge_cuda.checkpoint import load_tokenizer
    from forge_cuda.data import eval_windows
    from forge_cuda.evaluate import token_byte_lengths
    from sentinel.config import read_config, text_config
    from sentinel.weights import header_param_count

    tokenizer = load_tokenizer(src)  # the folder's own (a trimmed folder must carry its trimmed one)
    windows, stats = eval_windows(documents, tokenizer, seq_len)
    table = token_byte_lengths(tokenizer)
    params = header_param_count(src)
    return {"windows": windows.numpy().astype("int32"), "predicted_bytes": int(table[windows[:, 1:]].sum()),
            "token_bytes": table,
            "params": params, "vocab_size": int(text_config(read_config(src)).get("vocab_size", len(tokenizer))),
            "tokenizer_size": len(tokenizer), "text_bytes": stats["text_bytes"]}


def folder_stamp(src: Path) -> str:
    """Names, sizes and times of the folder's weight files: a row is reused only for the same weights."""
    files = sorted(Path(src).glob("*.safetensors"))
    return hashlib.sha256(repr([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]).encode()
                          ).hexdigest()[:16]


def score(label: str, src: Path, fmt: str, data: dict, tmp: Path) -> dict:
    """Convert, load, evaluate one (model, format): a row of the table."""
    from forge_cuda.evaluate import bits_per_byte

    m = measure(label, src, fmt, data["windows"], tmp, QUANT_COMPUTE)
    nll = m["loss"] * m["tokens"]
    return {"label": label, "source": str(src), "stamp": folder_stamp(src), "format": fmt, "bits": FORMATS[fmt] or 16,
            "weight_bytes": m["weight_bytes"], "params": data["params"], "vocab_size": data["vocab_size"],
            "tokenizer_size": data["tokenizer_size"], "windows": int(data["windows"].shape[0]),
            "eval_tokens": m["tokens"], "predicted_bytes": data["predicted_bytes"], "nll": nll,
            "bpb": bits_per_byte(nll, data["predicted_bytes"]), "ppl": m["ppl"], "loss": m["loss"],
            "dense_fallback": m["dense_fallback"], "compute_dtype": m["compute_dtype"],
            "convert_seconds": m["convert_seconds"], "eval_seconds": m["eval_seconds"]}


def mark_pareto(rows: list[dict]) -> None:
    """``pareto``: no other row has bytes <= and bpb <= with one of them strictly smaller."""
    for r in rows:
        r["pareto"] = not any(o is not r and o["weight_bytes"] <= r["weight_bytes"] and o["bpb"] <= r["bpb"]
                              and (o["weight_bytes"] < r["weight_bytes"] or o["bpb"] < r["bpb"]) for o in rows)


def torch_check(src: Path, data: dict, settings_json: Path) -> dict:
    """The base model in torch fp32 through forge_cuda.evaluate.perplexity on the same windows (the forge's
    own evaluator), beside the results JSON's baseline row where it has one."""
    import torch

    from forge_cuda.checkpoint import load_model
    from forge_cuda.evaluate import perplexity

    ev = perplexity(load_model(src), torch.from_numpy(data["windows"]).long(), batch_size=4, progress=False,
                    token_bytes=data["token_bytes"])
    out = {"bpb": ev["bpb"], "ppl": ev["ppl"], "tokens": ev["tokens"], "predicted_bytes": ev["predicted_bytes"]}
    base = next((r for r in json.loads(settings_json.read_text()).get("rows", []) if r.get("row") == "baseline"),
                None)
    if base:
        out.update(results_json_baseline_bpb=base.get("bpb"), results_json_baseline_tokens=base.get("tokens"))
    return out


def print_row(r: dict, note: str = "") -> None:
    print(f"{r['label']:>26} {r['format']:>4}: {r['weight_bytes']:>12,} bytes  bpb {r['bpb']:.4f}  "
          f"ppl {r['ppl']:8.3f}  ({r['eval_tokens']:,} tokens = {r['predicted_bytes']:,} bytes, vocab "
          f"{r['vocab_size']:,}){note}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2-135m", help="base model: name or HF folder (its tokenizer picks "
                                                            "the eval documents, as in the forge)")
    ap.add_argument("--forged", action="append", default=[], metavar="NAME=FOLDER", help="forged HF folders")
    ap.add_argument("--formats", default=",".join(f for f in ("fp16", "q8", "q6", "q4") if f in FORMATS))
    ap.add_argument("--settings", type=Path, default=RESULTS / "recovery_budget.json",
                    help="results JSON whose 'settings' (seq_len, eval_tokens, ...) define the eval documents")
    ap.add_argument("--eval-tokens", type=int, help="cap the eval tokens below the settings' (quick runs)")
    ap.add_argument("--domain", help="eval domain [default: the results JSON's, else code]")
    ap.add_argument("--no-torch-check", action="store_true", help="skip the torch fp32 pass over the base model")
    ap.add_argument("--out", type=Path, default=RESULTS / "bytes_vs_bpb.json")
    args = ap.parse_args(argv)
    bad = [f for f in args.formats.split(",") if f not in FORMATS]
    if bad:
        ap.error(f"unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if any("=" not in f for f in args.forged):
        ap.error("--forged takes NAME=FOLDER")
    labels = ["base"] + [f.split("=", 1)[0] for f in args.forged]
    if len(set(labels)) != len(labels):
        ap.error("every model needs its own NAME (and 'base' is the base model's)")
    if not args.settings.is_file():
        ap.error(f"{args.settings} not found: run the bench it comes from, or pass --settings")
    return args


def start(args, settings: dict, models: list[tuple[str, Path]], documents) -> dict:
    """The result to fill: the out JSON's when it was written with the same settings, else a fresh one."""
    if args.out.is_file():
        done = json.loads(args.out.read_text())
        if done.get("settings") == settings and done.get("documents", {}).get("sha256") == \
                documents_sha256(documents):
            done["models"] = {**done.get("models", {}), **{label: str(src) for label, src in models}}
            return done
        print(f"{args.out} was written with other settings: starting a new table", flush=True)
    return {**run_facts(), "busy_at_start": busy_processes(), "settings_json": str(args.settings),
            "settings": settings,
            "documents": {"count": len(documents), "text_bytes": sum(len(d.text.encode()) for d in documents),
                          "sha256": documents_sha256(documents)},
            "compute_note": QUANT_NOTES[QUANT_COMPUTE].split("; kernel_check")[0],
            "models": {label: str(src) for label, src in models},
            "rows": []}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    wall = time.perf_counter()
    settings = read_settings(args.settings, args.eval_tokens, args.domain)
    base = Path(resolve_model(args.base))
    settings["base"] = str(base)
    models = [("base", base)] + [(n, Path(f).expanduser()) for n, f in (e.split("=", 1) for e in args.forged)]
    from forge_cuda.checkpoint import load_tokenizer

    documents = eval_documents(settings, load_tokenizer(base))
    result = start(args, settings, models, documents)
    result["complete"] = False
    with tempfile.TemporaryDirectory(prefix="bytes_vs_bpb-") as tmp:
        for label, src in models:
            data = None
            for fmt in args.formats.split(","):
                old = next((r for r in result["rows"] if r["label"] == label and r["format"] == fmt), None)
                if old is not None and (old["source"], old.get("stamp")) == (str(src), folder_stamp(src)):
                    print_row(old, "  (already in the out JSON)")
                    continue
                data = data or model_data(src, documents, settings["seq_len"])
                if label == "base" and not args.no_torch_check and "torch_fp32_base" not in result:
                    result["torch_fp32_base"] = torch_check(src, data, args.settings)
                row = score(label, src, fmt, data, Path(tmp))
                result["rows"] = [r for r in result["rows"] if (r["label"], r["format"]) != (label, fmt)] + [row]
                mark_pareto(result["rows"])
                write_json(args.out, result)
                print_row(row)
    mark_pareto(result["rows"])
    result.update(busy_at_end=busy_processes(), wall_seconds=time.perf_counter() - wall, complete=True)
    write_json(args.out, result)
    front = [f"{r['label']} {r['format']}" for r in sorted(result["rows"], key=lambda r: r["weight_bytes"])
             if r["pareto"]]
    print(f"Pareto front (bytes up): {', '.join(front)}")
    t = result.get("torch_fp32_base")
    if t:
        print(f"torch fp32 base: bpb {t['bpb']:.4f} (results JSON baseline: {t.get('results_json_baseline_bpb')})")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
