"""docs/GPU.md's measured part, generated from bench/results/gpu_check.json (*not measured* until a GPU run).

    python bench/gpu_check_tables.py            # rewrite the generated blocks of docs/GPU.md

``render()`` is what bench/make_tables.py may call. Only a JSON written on a GPU
(``"mode": "gpu"``) counts as measured; a dry run's numbers never reach the docs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_check_estimate import GPU_SIZES_GIB, GiB, MARGIN  # noqa: E402
from bench.gpu_check_models import SHAPES  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpu_check.json"
DOC = ROOT / "docs" / "GPU.md"
BLOCKS = ("gpu_check", "gpu_check_schema")
NOT_MEASURED = "*not measured*"
TRAIN_STAGES = ("stage0", "distill", "control")


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"
    return ["| " + " | ".join(head) + " |", sep] + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _num(value, fmt: str = "{:,.0f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "–"


def _gib(value) -> str:
    return f"{value / GiB:.1f}" if isinstance(value, (int, float)) else "–"


def _stage_cell(stage: dict, key: str) -> str:
    if stage.get("status") != "ok":
        return stage.get("status", "–")
    return _num(stage.get(key), "{:,.1f}" if key == "seconds" else "{:,.0f}") if key != "peak_bytes" \
        else _gib(stage.get("peak_bytes"))


def stage_tables(runs: list[dict]) -> list[str]:
    head = ["model (measured depth)", "mode", "eval tok/s", "stage 0 tok/s", "prune s", "block-local tok/s",
            "distill tok/s", "control tok/s", "peak GiB (max stage)"]
    rows = []
    for r in runs:
        st = r.get("stages", {})
        if not st:
            rows.append([r["shape"], r["mode"], r.get("reason") or r.get("status", "–")] + [""] * 6)
            continue
        depth = r.get("shape_facts", {})
        name = f"{r['shape']} ({depth.get('measured_layers')}/{depth.get('full_layers')} layers)"
        peaks = [s.get("peak_bytes") for s in st.values() if s.get("status") == "ok" and s.get("peak_bytes")]
        rows.append([name, r["mode"], _stage_cell(st.get("eval", {}), "tokens_per_s"),
                     _stage_cell(st.get("stage0", {}), "tokens_per_s"), _stage_cell(st.get("prune", {}), "seconds"),
                     _stage_cell(st.get("blocklocal", {}), "tokens_per_s"),
                     _stage_cell(st.get("distill", {}), "tokens_per_s"),
                     _stage_cell(st.get("control", {}), "tokens_per_s"), _gib(max(peaks) if peaks else None)])
    stages = ("eval", "stage0", "prune", "blocklocal", "distill", "control", "save")
    peak_rows = [[f"{r['shape']}", r["mode"]] + [_stage_cell(r["stages"].get(s, {}), "peak_bytes") for s in stages]
                 for r in runs if r.get("stages")]
    return table(head, rows) + ["Peak GPU memory per stage, GiB (`torch.cuda.max_memory_allocated`, measured depth):",
                                ""] + table(["model", "mode", *stages], peak_rows)


def estimate_table(est: dict, defaults: dict) -> list[str]:
    lines = [f"Default forge: {defaults['cycles']} cycles to {defaults['target_params']} of the parameters, "
             f"{defaults['steps']} steps x {defaults['batch_size']} x {defaults['seq_len']} tokens per stage, "
             f"{defaults['eval_tokens']:,} eval tokens per row (plus out-of-domain rows and recovery curves), "
             f"{defaults['calib_windows']} calibration windows. "
             "Minutes at the measured rates (unpruned speed for every cycle: an upper bound); shapes measured at "
             "reduced depth are scaled to full depth by parameter count (marked *scaled*).", ""]
    rows = []
    for shape, modes in est.items():
        for mode, e in modes.items():
            f = e.get("default_forge")
            rows.append([shape, mode, _num(e.get("distill_tokens_per_s_full_depth")),
                         (f"{f['seconds'] / 60:.1f}" + (" *scaled*" if f["scaled_by_params"] else "")) if f else "–"])
    return lines + table(["model", "mode", "distill tok/s (full depth)", "default forge, minutes"], rows)


def tier_rows(tiers: dict | None) -> list[str]:
    """Per GPU size: the best mode whose measured peak fits, and what the forge's rule picks."""
    shapes = list(SHAPES)
    rows = []
    for size in GPU_SIZES_GIB:
        row = [f"{size} GiB"]
        entry = next((r for r in (tiers or {}).get("by_gpu", []) if r["gpu_gib"] == size), None)
        for shape in shapes:
            m = (entry or {}).get("models", {}).get(shape)
            peaks = (tiers or {}).get("peak_bytes", {}).get(shape, {})
            if m is None or not any(v is not None for v in peaks.values()):
                row.append(NOT_MEASURED)
            else:
                row.append(f"{m['best_measured'] or 'does not fit'} (rule: {m['forge_rule']})")
        rows.append(row)
    return table(["GPU memory"] + shapes, rows)


def measured_section(doc: dict) -> list[str]:
    env, secs = doc["env"], doc["sections"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = [f"Source: `bench/results/gpu_check.json`, written by `bash scripts/gpu_check.sh` on "
             f"{doc['started_at'][:10]}: {env.get('device_name')} ({_gib(env.get('gpu_memory_bytes'))} GiB), "
             f"CUDA {env.get('cuda_version')}, Python {env['python']}; {versions}; commit {env.get('git_commit')}; "
             f"budget {doc['budget_s']:.0f} s, wall {doc['wall_s']:.0f} s.", ""]
    t = secs["tests"]
    counts = t.get("counts") or {}
    lines += ["### CUDA-only tests", "", f"Status {t['status']}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + ".", ""]
    lines += [f"- `{c['name']}`: {c['outcome']}" + (f" ({c['message'][:160]})" if c.get("message") else "")
              for c in t.get("cases", []) if c["outcome"] != "passed"] + [""]
    lines += ["### Tokens/s and peak GPU memory per stage (bf16 autocast, fp32 master weights, random weights)", ""]
    lines += stage_tables(secs["stages"].get("runs", []))
    lines += ["### Wall time of the default forge", ""] + estimate_table(doc.get("estimates") or {},
                                                                        doc["forge_defaults"])
    lines += [f"### Tier per GPU memory (measured peak of every stage <= {MARGIN:.0%} of the GPU)", ""]
    lines += tier_rows(doc.get("tiers"))
    f = secs["forge"]
    rows = f.get("report", {}).get("rows", [])
    lines += ["### One short forge through the CLI", "",
              f"Status {f['status']}; weights: {f.get('weights')} "
              f"({(f.get('real_weights') or {}).get('reason') or 'real SmolLM2-135M, sha256 checked'}); "
              f"wall {_num(f.get('wall_s'), '{:.0f}')} s. " + "; ".join(
                  f"{r['row']} PPL {_num(r.get('ppl'), '{:.2f}')}" for r in rows), ""]
    return lines


def not_measured_section() -> list[str]:
    lines = [f"{NOT_MEASURED}: no GPU run has been recorded yet (`bench/results/gpu_check.json` is missing or is a "
             "dry run). Until one is, nothing below is a measurement.", "",
             "### Tokens/s and peak GPU memory per stage", "", NOT_MEASURED, "",
             "### Wall time of the default forge", "", NOT_MEASURED, "",
             "### Tier per GPU memory", "",
             "What the forge's rule (`forge_cuda/tiers.py`: bf16 LoRA needs ~3.2 bytes per parameter + 2 GiB, "
             "within 90% of the GPU) picks today; the measured column replaces this table after a GPU run.", ""]
    try:
        from forge_cuda.tiers import choose_tier

        from bench.gpu_check_models import meta_params
        params = {s: meta_params(s) for s in SHAPES}
        rows = [[f"{size} GiB"] + [f"{choose_tier(params[s], 'cuda', size * GiB).name} (rule, {NOT_MEASURED})"
                                   for s in SHAPES] for size in GPU_SIZES_GIB]
        lines += table(["GPU memory"] + [f"{s} ({params[s] / 1e9:.2f}B)" for s in SHAPES], rows)
    except ImportError as e:
        lines += [f"(rule table unavailable here: {e})", ""]
    return lines


def schema_lines(schema: dict, path: str = "$", required: bool = True) -> list[str]:
    """The schema flattened to one line per field: path, type, enum, and whether it is required."""
    kind = schema.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    enum = f" one of {', '.join(map(str, schema['enum']))}" if "enum" in schema else ""
    lines = [f"- `{path}`: {kind}{enum}" + ("" if required else " (optional)")]
    values = schema.get("values")
    for key, sub in schema.get("properties", {}).items():
        if sub is values:
            continue  # shown once below as <key>
        lines += schema_lines(sub, f"{path}.{key}", key in schema.get("required", []))
    if values is not None:
        lines += schema_lines(values, f"{path}.<key>", False)
    if "items" in schema:
        lines += schema_lines(schema["items"], f"{path}[]", True)
    return lines


def schema_section() -> list[str]:
    from bench.gpu_check_schema import SCHEMA

    return schema_lines(SCHEMA) + [""]


def load(path: Path = RESULTS) -> dict | None:
    doc = json.loads(path.read_text()) if path.is_file() else None
    return doc if doc and doc.get("mode") == "gpu" else None


def replace_block(text: str, name: str, body: list[str]) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + "\n".join(body).rstrip() + "\n" + end + tail


def render(results: Path = RESULTS, doc_path: Path = DOC) -> None:
    doc = load(results)
    text = doc_path.read_text()
    text = replace_block(text, "gpu_check", measured_section(doc) if doc else not_measured_section())
    text = replace_block(text, "gpu_check_schema", schema_section())
    doc_path.write_text(text)


if __name__ == "__main__":
    render()
    print(f"wrote {DOC}")
