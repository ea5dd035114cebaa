"""``sentinel verify X.gguf``: measure a GGUF through llama.cpp on this machine.

Measured in a child process, so its peak RSS is the model's and llama.cpp's,
not this CLI's: load time, then per context one warm-up and ``repeats`` runs
of a prefill (prompt tok/s) followed by ``decode_tokens`` greedy steps one
token at a time (decode tok/s); medians. The prompt is real text (Python's own
source files) tokenized by the GGUF's own tokenizer. A target is *verified*
only when this machine is that target (``runtime_mlx.targets.is_device``);
the rest are listed as not measured, never estimated from a file name.
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from sentinel.atomic import check_report_folder, write_json, write_text
from sentinel.errors import SentinelError, os_error

SCHEMA = 1
DEFAULTS = {"contexts": (128, 512), "decode_tokens": 32, "repeats": 3}


def prompt_text() -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    return "".join((root / n).read_text() for n in ("textwrap.py", "string.py"))


def measure_here(path: Path, contexts: list[int], decode_tokens: int, repeats: int) -> dict[str, Any]:
    """The measurement itself (run in the child)."""
    from convert.gguf_llama import LlamaCpp

    rss_before = _peak_rss(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    llm = LlamaCpp(path, n_ctx=max(contexts) + decode_tokens + 1)
    load_s = time.perf_counter() - t0
    ids = llm.tokenize(prompt_text())
    runs = []
    for ctx in contexts:
        prompt = (ids * (ctx // max(len(ids), 1) + 1))[:ctx]
        samples = [_run(llm, prompt, decode_tokens) for _ in range(repeats + 1)][1:]  # first: warm-up
        runs.append({"context": ctx, "decode_tokens": decode_tokens, "repeats": repeats,
                     "prompt_tps": statistics.median(s[0] for s in samples),
                     "decode_tps": statistics.median(s[1] for s in samples)})
    arch = llm.meta("general.architecture")
    llm.close()
    return {"load_s": load_s, "runs": runs, "architecture": arch, "backend": _backend(),
            "rss_before_load_bytes": rss_before, "peak_rss_bytes": _peak_rss(resource.RUSAGE_SELF)}


def _run(llm, prompt: list[int], n: int) -> tuple[float, float]:
    _, prefill_s, decode_s = llm.timed_greedy(prompt, n)
    return len(prompt) / prefill_s, n / decode_s


def _backend() -> str:
    """'metal' when this llama.cpp build has a Metal device (the verified rule asks for the GPU), else 'cpu'."""
    import cyllama.llama.llama_cpp as cp

    return "metal" if any("metal" in str(n).lower() for n in cp.ggml_backend_reg_names()) else "cpu"


def _peak_rss(who) -> int:
    """ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(who).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def verify_gguf(model: str | os.PathLike, targets=None, contexts=None, decode_tokens=None, repeats=None,
                out=None) -> tuple[dict[str, Any], Path]:
    """Measure ``model`` in a child process, write ``<stem>.verify.json`` and ``.md``; return (report, path)."""
    from convert.gguf_llama import check_gguf
    from runtime_mlx.targets import device_facts, get_targets, is_device

    path = Path(model)
    check_gguf(path)
    contexts = list(contexts or DEFAULTS["contexts"])
    decode_tokens = decode_tokens or DEFAULTS["decode_tokens"]
    repeats = repeats or DEFAULTS["repeats"]
    chosen = get_targets(targets)
    folder = check_report_folder(Path(out) if out else path.parent,  # before the measurement, not after
                                 (f"{path.stem}.verify.json", f"{path.stem}.verify.md"))
    args = json.dumps({"path": str(path.resolve()), "contexts": contexts, "decode_tokens": decode_tokens,
                       "repeats": repeats})
    child = subprocess.run([sys.executable, "-m", "convert.gguf_verify", args], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    if child.returncode != 0:
        lines = [l for l in (child.stdout + child.stderr).splitlines() if l.strip()]
        raise SentinelError(f"measuring {path} failed ({lines[-1] if lines else child.returncode})")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    facts = {**device_facts(), "backend": measured.pop("backend")}
    report = {"schema": SCHEMA, "runtime": "llama.cpp", "llama_cpp": _llama_cpp_version(), "file": path.name,
              "bytes": path.stat().st_size, "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
              "device": facts, **measured,
              "targets": [{"target": t.name, "status": "verified" if is_device(t, facts) else "not measured",
                           "note": "measured on this machine" if is_device(t, facts)
                           else "this machine is not this target; run `sentinel verify` there"} for t in chosen]}
    json_path = folder / f"{path.stem}.verify.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(json_path, report)
        write_text(json_path.with_suffix(".md"), render_markdown(report))
    except OSError as e:
        raise os_error(e, json_path) from None
    return report, json_path


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"# llama.cpp measurement: {r['file']}", "",
             f"{r['bytes'] / 2**20:,.1f} MiB, architecture `{r['architecture']}`, llama.cpp {r['llama_cpp']}, "
             f"on {r['device'].get('chip', '?')}, {r['device']['backend']} ({r['measured_at']}). Load {r['load_s']:.2f} s, "
             f"peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB (process before loading: "
             f"{r['rss_before_load_bytes'] / 2**20:,.0f} MiB).", "",
             "| context | prompt tok/s | decode tok/s |", "|---:|---:|---:|"]
    lines += [f"| {x['context']} | {x['prompt_tps']:,.1f} | {x['decode_tps']:,.1f} |" for x in r["runs"]]
    lines += ["", "| target | status |", "|---|---|"]
    lines += [f"| {t['target']} | {t['status']}: {t['note']} |" for t in r["targets"]]
    return "\n".join(lines) + "\n"


def _llama_cpp_version() -> str:
    """The llama.cpp build inside the cyllama wheel (its build_config.json says which)."""
    try:
        import cyllama

        config = json.loads((Path(cyllama.__file__).parent / "build_config.json").read_text())
        return f"{config['versions']['llama_cpp_version']} (cyllama {getattr(cyllama, '__version__', '?')})"
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


if __name__ == "__main__":  # the child: python -m convert.gguf_verify '<json args>'
    a = json.loads(sys.argv[1])
    try:
        result = measure_here(Path(a["path"]), a["contexts"], a["decode_tokens"], a["repeats"])
    except SentinelError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
