"""``sentinel verify``: measure a converted model on this machine and say where else it should run.

Measured here: load time, peak memory (``mx.reset_peak_memory`` before each
run), prompt and decode tokens/s at each context (one warm-up, then repeats;
medians), KV bytes per token read from mlx-lm's own cache, and the device
facts. Timing goes through mlx-lm's ``stream_generate`` (EOS disabled so every
run decodes the same number of tokens).

A target is **verified** only when this machine *is* that target
(``targets.is_device``: Apple Silicon with that RAM); every other target gets
the planner's prediction, labelled *estimated*. The model's name plays no part.
"""

from __future__ import annotations

import datetime
import statistics
import sysconfig
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from runtime_mlx import planner
from runtime_mlx.targets import Target, device_facts, get_targets, is_device
from sentinel.atomic import check_report_folder, write_json, write_text
from sentinel.errors import SentinelError, os_error

SCHEMA = 1
# Apple GPUs take real contexts in seconds; MLX's CPU backend needs ~0.2 s per token for a 135M model.
DEFAULTS = {"metal": {"contexts": (512, 2048, 8192), "decode_tokens": 128, "repeats": 3},
            "cpu": {"contexts": (64, 256), "decode_tokens": 8, "repeats": 2}}


def backend() -> str:
    import mlx.core as mx

    return "metal" if mx.metal.is_available() else "cpu"


def runtime_facts() -> dict[str, Any]:
    """Device facts plus the MLX side: backend and library versions."""
    import mlx.core as mx
    import mlx_lm

    return {**device_facts(), "backend": backend(), "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__}


def prompt_ids(tokenizer, n: int) -> list[int]:
    """``n`` tokens of real text (Python's own source files), the same on every machine with this Python."""
    root = Path(sysconfig.get_paths()["stdlib"])
    ids: list[int] = []
    for name in ("textwrap.py", "string.py", "os.py", "argparse.py"):
        ids += list(tokenizer.encode((root / name).read_text()))
        if len(ids) >= n:
            return ids[:n]
    while len(ids) < n:
        ids += ids
    return ids[:n]


def _run(model, tokenizer, prompt: list[int], decode_tokens: int) -> dict[str, float]:
    import mlx.core as mx
    from mlx_lm.generate import stream_generate
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    mx.clear_cache()
    mx.reset_peak_memory()
    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=decode_tokens, prompt_cache=cache):
        pass
    peak = mx.get_peak_memory()
    kv, tokens = 0, 0
    for c in cache:
        if getattr(c, "keys", None) is not None:
            kv += c.keys.nbytes + c.values.nbytes
            tokens = c.keys.shape[2]  # allocated slots, all layers alike
    return {"prompt_tps": last.prompt_tps, "decode_tps": last.generation_tps, "peak_bytes": peak,
            "decode_tokens": last.generation_tokens, "kv_bytes_per_token": kv / tokens if tokens else 0.0}


def measure(folder: Path, contexts: list[int], decode_tokens: int, repeats: int,
            progress: bool = False, keep_dtype: bool = False) -> dict[str, Any]:
    """Load once, warm up once, then ``repeats`` runs per context; medians of speeds, max of peaks.
    ``compute_dtype`` says what the matmuls ran in (float32 on a CPU backend unless ``keep_dtype``)."""
    import mlx.core as mx

    import runtime_mlx
    from runtime_mlx.loader import compute_dtype

    mx.clear_cache()
    mx.reset_peak_memory()
    tic = time.perf_counter()
    model, tokenizer = runtime_mlx.load(folder, lazy=False, keep_dtype=keep_dtype)
    mx.eval(model.parameters())
    load_s = time.perf_counter() - tic
    load_peak = mx.get_peak_memory()
    tokenizer.eos_token_ids = set()  # every run decodes exactly decode_tokens
    _run(model, tokenizer, prompt_ids(tokenizer, min(16, min(contexts))), 2)  # warm-up
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(contexts) * repeats, desc="verify", unit="run")
    rows = []
    for context in contexts:
        prompt = prompt_ids(tokenizer, context)
        runs = []
        for _ in range(repeats):
            runs.append(_run(model, tokenizer, prompt, decode_tokens))
            if bar is not None:
                bar.update(1)
        rows.append({"context": context, "prompt_tokens": context, "decode_tokens": decode_tokens,
                     "peak_bytes": max(r["peak_bytes"] for r in runs),
                     "prompt_tps": statistics.median(r["prompt_tps"] for r in runs),
                     "decode_tps": statistics.median(r["decode_tps"] for r in runs),
                     "kv_bytes_per_token": runs[0]["kv_bytes_per_token"], "runs": runs})
    if bar is not None:
        bar.close()
    return {"load_seconds": load_s, "load_peak_bytes": load_peak, "compute_dtype": compute_dtype(model),
            "contexts": rows}


def format_name(facts: planner.ModelFacts) -> str:
    dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[facts.dtype]
    return f"{facts.bits}-bit ({dtype})" if facts.bits else dtype


def build_report(model_facts: planner.ModelFacts, measured: Mapping[str, Any], facts: Mapping[str, Any],
                 targets: list[Target], settings: Mapping[str, Any],
                 here_facts: Optional[planner.ModelFacts] = None) -> dict[str, Any]:
    """Everything verify.json holds. ``facts`` describes the measuring machine (tests inject them);
    ``here_facts`` the model as it ran here (e.g. upcast to float32 on a CPU backend), which the
    planner check uses; targets are planned as stored."""
    here = facts.get("backend", "cpu")
    check = []
    for row in measured["contexts"]:
        pred = planner.predict_peak(here_facts or model_facts, row["context"] + row["decode_tokens"], here,
                                    prompt=row["context"])["total"]
        check.append({"context": row["context"], "decode_tokens": row["decode_tokens"], "predicted_bytes": pred,
                      "measured_bytes": row["peak_bytes"],
                      "relative_error": (pred - row["peak_bytes"]) / row["peak_bytes"]})
    out_targets = []
    for target in targets:
        if is_device(target, facts):
            fits = [{"context": r["context"], "peak_bytes": r["peak_bytes"],
                     "working_set_bytes": target.working_set_bytes,
                     "fits": r["peak_bytes"] <= target.working_set_bytes,
                     "margin_bytes": target.working_set_bytes - r["peak_bytes"], "decode_tps": r["decode_tps"]}
                    for r in measured["contexts"]]
            out_targets.append({"target": target.to_dict(), "status": "verified", "fits": fits})
        else:
            fits = []
            for r in measured["contexts"]:
                f = planner.fit(model_facts, target, r["context"] + r["decode_tokens"])
                fits.append({"context": r["context"], "peak_bytes": f["predicted_peak_bytes"],
                             "working_set_bytes": f["working_set_bytes"], "fits": f["fits"],
                             "margin_bytes": f["margin_bytes"], "decode_tps": f["decode_tps_upper_bound"]})
            out_targets.append({"target": target.to_dict(), "status": "estimated", "fits": fits})
    return {"schema": SCHEMA, "model": model_facts.name, "format": format_name(model_facts),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": dict(facts), "settings": dict(settings), "model_facts": model_facts.to_dict(),
            "measured": dict(measured), "planner_check": check, "targets": out_targets}


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def render_markdown(report: Mapping[str, Any]) -> str:
    d, m, s = report["device"], report["measured"], report["settings"]
    lines = [f"# Verification: {report['model']} ({report['format']})", "",
             f"Measured {report['date']} on {d['chip']} ({d['system']} {d['machine']}, "
             f"{d['ram_bytes'] / 2**30:.1f} GiB RAM, MLX {d.get('mlx')} on {d.get('backend')}, mlx-lm {d.get('mlx_lm')}).",
             f"Settings: contexts {', '.join(str(c) for c in s['contexts'])} prompt tokens, {s['decode_tokens']} "
             f"decoded tokens, {s['repeats']} repeats after one warm-up (medians; peak = max over repeats); "
             f"computed in {s.get('compute_dtype', report['format'])}.", "",
             f"Load: {m['load_seconds']:.2f} s, peak {_mib(m['load_peak_bytes'])}.", "",
             "## Measured on this machine", "",
             "| context | peak memory | planner predicted | prompt tok/s | decode tok/s | KV bytes/token |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row, chk in zip(m["contexts"], report["planner_check"]):
        lines.append(f"| {row['context']} | {_mib(row['peak_bytes'])} | {_mib(chk['predicted_bytes'])} "
                     f"({chk['relative_error']:+.1%}) | {row['prompt_tps']:.2f} | {row['decode_tps']:.2f} | "
                     f"{row['kv_bytes_per_token']:,.0f} |")
    lines += ["", "## Targets", "",
              "*verified*: measured on that machine. *estimated*: predicted by the planner (peak memory) "
              "and bandwidth / bytes per token (an upper bound on decode speed); not run there.", "",
              "| target | status | context | peak memory | usable working set | fits | decode tok/s |",
              "|---|---|---:|---:|---:|---|---:|"]
    for t in report["targets"]:
        name = f"{t['target']['name']} ({t['target']['chip']}, {t['target']['ram_gb']:g} GB)"
        for f in t["fits"]:
            speed = f"{f['decode_tps']:.1f}" + ("" if t["status"] == "verified" else " (bound)")
            lines.append(f"| {name} | {t['status']} | {f['context']} | {_mib(f['peak_bytes'])} | "
                         f"{_mib(f['working_set_bytes'])} | {'yes' if f['fits'] else 'no'} "
                         f"(margin {_mib(f['margin_bytes'])}) | {speed} |")
    return "\n".join(lines) + "\n"


def _positive(name: str, values: list[int]) -> None:
    if not values or any(int(v) <= 0 for v in values):
        raise SentinelError(f"{name} must be positive integers")


def verify(model: str | Path, targets: Optional[str | list[str]] = None, contexts: Optional[list[int]] = None,
           decode_tokens: Optional[int] = None, repeats: Optional[int] = None, out: Optional[Path] = None,
           progress: bool = False, keep_dtype: bool = False) -> tuple[dict[str, Any], Path]:
    """Measure MODEL here, judge every target, write verify.json + verify.md into ``out`` (default: the
    model folder). Returns (report, json path)."""
    from runtime_mlx.loader import check_mlx_folder

    folder = check_mlx_folder(model)
    chosen = get_targets(targets)
    facts = runtime_facts()
    defaults = DEFAULTS[facts["backend"]]
    contexts = list(contexts or defaults["contexts"])
    decode_tokens = decode_tokens or defaults["decode_tokens"]
    repeats = repeats or defaults["repeats"]
    _positive("contexts", contexts)
    _positive("--decode-tokens and --repeats", [decode_tokens, repeats])
    check_report_folder(out if out is not None else folder, ("verify.json", "verify.md"))  # before measuring
    mfacts = planner.model_facts(folder)
    measured = measure(folder, contexts, decode_tokens, repeats, progress, keep_dtype)
    computed = measured["compute_dtype"]
    here = mfacts if planner.NAMED_DTYPES.get(computed) == mfacts.dtype else planner.model_facts(folder, computed)
    settings = {"contexts": contexts, "decode_tokens": decode_tokens, "repeats": repeats, "warmup_runs": 1,
                "compute_dtype": computed}
    report = build_report(mfacts, measured, facts, chosen, settings, here)
    report["model_path"] = str(folder)
    out = Path(out) if out is not None else folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "verify.json", report)
        write_text(out / "verify.md", render_markdown(report))
    except OSError as e:
        raise os_error(e, out / "verify.json") from None
    return report, out / "verify.json"
