"""Forge reports: report.json holds every number; report.md and the PNG plots (report_plots) are views of it.

Rows state held-out bits per byte (comparable across tokenizers) and PPL beside it;
an out-of-domain table (English prose, ``docs``) shows what the domain tuning costs
elsewhere; the per-cycle table counts what each cycle removed; the recovery curve
shows bpb against recovery tokens for the forged track and the control.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from forge_cuda.report_plots import write_plots
from sentinel.atomic import write_json
from sentinel.verdict import verdict

ROW_KEYS = ("bpb", "ppl", "loss", "nll", "tokens", "predicted_bytes", "params", "bytes_fp16", "kv_bytes_per_token_fp16",
            "q_heads_total", "kv_heads_total", "mlp_channels_total", "vocab_size")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def library_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "safetensors", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_facts(device: str) -> dict:
    import torch

    facts = {"device": device, "machine": platform.machine(), "os": platform.platform(),
             "cpu_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=props.name, gpu_memory_bytes=props.total_memory)
    return facts


def final_rows(state: dict) -> list[dict]:
    """The three published rows: baseline, the unpruned control (same training, no pruning), forged."""
    accepted = state["cycles"][state["accepted_cycle"]]
    last = state["cycles"][-1]
    rows = [("baseline", state["baseline"])]
    if "control" in last:
        rows.append(("unpruned control", last["control"]))
    rows.append(("forged", accepted["forged"]))
    return [{"row": name, **{k: r.get(k) for k in ROW_KEYS}} for name, r in rows]


def ood_rows(state: dict) -> list[dict]:
    """Base and forged on the out-of-domain documents (empty when the run had none)."""
    forged = state["cycles"][state["accepted_cycle"]].get("forged_ood")
    if not state.get("baseline_ood") or not forged:
        return []
    return [{"row": name, **{k: r.get(k) for k in ("bpb", "ppl", "tokens", "predicted_bytes", "domain", "documents")}}
            for name, r in (("baseline", state["baseline_ood"]), ("forged", forged))]


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) if r.get(c[0]) is not None else "–" for c in cols) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def cycle_rows(report: dict) -> list[dict]:
    """Per cycle: the size kept and what this cycle removed (counted from the rows), and each bpb/PPL."""
    base, out, prev = report["baseline"], [], None
    for c in report["cycles"]:
        f = c["forged"]
        row = {"cycle": c["cycle"], "kept": f["params"] / base["params"], "params": f["params"],
               "heads_removed": (prev["q_heads_total"] - f["q_heads_total"]) if prev else 0,
               "channels_removed": (prev["mlp_channels_total"] - f["mlp_channels_total"]) if prev else 0,
               "one_shot": c.get("one_shot", {}).get("bpb"), "blocklocal": c.get("after_blocklocal", {}).get("bpb"),
               "forged": f.get("bpb"), "forged_ppl": f.get("ppl"), "control": c.get("control", {}).get("bpb"),
               "tokens": c["blocklocal"]["tokens"] + c["train"].get("window_tokens", 0) if c["cycle"] else None}
        out.append(row)
        prev = f
    return out


def _intro(report: dict) -> list[str]:
    cfg, data = report["config"], report["data"]
    ev = data["eval"]
    budget = f"recovery budget {cfg['budget']} (block-local share {cfg['blocklocal_share']:g})" \
        if cfg.get("budget") else f"{plural(cfg['train']['steps'], 'training step')} per stage"
    trained = report["cycles"][-1].get("train", {}).get("trainable") or cfg["train"].get("trainable", "lora")
    return [f"# Forge report: {Path(report['source']).name} on `{cfg['domain']}`", "",
            f"Device: {report['device']['device']} ({report['device']['machine']}); tier: "
            f"{report['tier']['name']} ({report['tier']['reason']}); criterion `{cfg['prune']['criterion']}`, "
            f"{_goal(cfg)} over {plural(report.get('schedule', cfg)['cycles'], 'cycle')}, {budget}; recovery `{cfg.get('recovery', 'lora')}` "
            f"({'LoRA adapters' if trained == 'lora' else 'all parameters'} trained).", "",
            f"Held-out eval: {ev['tokens']:,} tokens in {plural(ev['windows'], 'window')} of {data['seq_len']} "
            f"from {plural(ev['documents'], 'document')} never used for training or calibration (split by "
            f"document; {ev.get('text_bytes', 0):,} bytes of text). Train: {data['train']['tokens']:,} tokens; "
            f"calibration: {data['calibration']['tokens']:,}. bpb = bits per byte of the predicted text "
            "(comparable across tokenizers); PPL per token beside it.", ""]


def write_markdown(report: dict, path: Path) -> None:
    cfg = report["config"]
    lines = _intro(report) + ["## Result", ""]
    lines.append(_table(report["rows"], [("row", "model", "s"), ("bpb", "bits/byte", ".4f"), ("ppl", "PPL", ".3f"),
                                         ("params", "params", ","), ("bytes_fp16", "bytes (fp16)", ","),
                                         ("kv_bytes_per_token_fp16", "KV bytes/token (fp16)", ","),
                                         ("q_heads_total", "query heads", "d"), ("kv_heads_total", "KV heads", "d"),
                                         ("mlp_channels_total", "MLP channels", ",")]))
    lines += ["", f"**Verdict:** {verdict(report['rows'])}"]
    if report.get("ood_rows"):
        ood = report["ood_rows"][0]
        lines += ["", f"## Out of domain (`{ood['domain']}`: {plural(ood['documents'], 'held-out document')}, "
                      f"{ood['tokens']:,} tokens)", "",
                  _table(report["ood_rows"], [("row", "model", "s"), ("bpb", "bits/byte", ".4f"), ("ppl", "PPL", ".3f")])]
    if report.get("stopped_by_budget"):
        lines += ["", f"Stopped by the quality budget (forged PPL ≤ control × {1 + cfg['max_ppl_increase']:.3f}); "
                      f"kept cycle {report['accepted_cycle']}."]
    lines += ["", "## Per cycle", "", _table(cycle_rows(report), [
        ("cycle", "cycle", "d"), ("kept", "params kept", ".1%"), ("heads_removed", "heads removed", "d"),
        ("channels_removed", "channels removed", ","), ("one_shot", "bpb after pruning", ".4f"),
        ("blocklocal", "bpb after block-local", ".4f"), ("forged", "forged bpb", ".4f"),
        ("forged_ppl", "forged PPL", ".3f"), ("control", "control bpb", ".4f"),
        ("tokens", "recovery tokens", ",")])]
    final = report["cycles"][report["accepted_cycle"]]["forged"]
    if final.get("mlp_channels"):
        lines += ["", "## Shape per layer (forged)", ""]
        shape = [{"layer": i, "q": q, "kv": kv, "mlp": m} for i, (q, kv, m) in
                 enumerate(zip(final["q_heads"], final["kv_heads"], final["mlp_channels"]))]
        lines.append(_table(shape, [("layer", "layer", "d"), ("q", "query heads", "d"), ("kv", "KV heads", "d"),
                                    ("mlp", "MLP channels", "d")]))
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in report["plots"]), "",
              "Every number above is read from report.json, written by the run itself."]
    path.write_text("\n".join(lines) + "\n")


def _goal(cfg: dict) -> str:
    target = cfg["prune"].get("target_params")
    if target is not None:
        return f"target {target:g} of the base parameters"
    return f"head level {cfg['prune_level']:.2f}, MLP level {cfg['prune'].get('mlp_level', 0):.2f}"


def finite(value):
    """NaN and infinities as null, so report.json is strict JSON for every parser."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_report(state: dict, folder: Path) -> dict:
    """Write report.json, plots/*.png and report.md into ``folder``; return the report dict."""
    report = finite({k: v for k, v in state.items() if k not in ("completed_cycle", "partial")})
    report["rows"] = final_rows(state)
    report["ood_rows"] = ood_rows(state)
    report["versions"] = library_versions()
    report["device"] = device_facts(state["device"])
    report["plots"] = write_plots(report, folder / "plots")
    write_json(folder / "report.json", report)
    write_markdown(report, folder / "report.md")
    return report
