"""Forge reports: report.json holds every number; report.md and the PNG plots are views of it."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from sentinel.atomic import write_json
from sentinel.verdict import verdict


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
    keys = ("ppl", "loss", "tokens", "params", "bytes_fp16", "kv_bytes_per_token_fp16", "q_heads_total",
            "kv_heads_total", "mlp_channels_total")
    return [{"row": name, **{k: r.get(k) for k in keys}} for name, r in rows]


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) if r.get(c[0]) is not None else "–" for c in cols) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def write_markdown(report: dict, path: Path) -> None:
    cfg, data = report["config"], report["data"]
    lines = [f"# Forge report: {Path(report['source']).name} on `{cfg['domain']}`", "",
             f"Device: {report['device']['device']} ({report['device']['machine']}); tier: "
             f"{report['tier']['name']} ({report['tier']['reason']}); criterion `{cfg['prune']['criterion']}`, "
             f"mode `{cfg['prune']['mode']}`, {_goal(cfg)} over {cfg['cycles']} cycles, "
             f"{cfg['train']['steps']} training steps per stage; recovery `{cfg.get('recovery', 'lora')}` "
             f"({cfg['train'].get('trainable', 'lora')} parameters).", "",
             f"Held-out eval: {data['eval']['tokens']:,} tokens in {data['eval']['windows']} windows of "
             f"{data['seq_len']} from {data['eval']['documents']} documents never used for training or "
             f"calibration (split by document). Train: {data['train']['tokens']:,} tokens; calibration: "
             f"{data['calibration']['tokens']:,}.", "", "## Result", ""]
    lines.append(_table(report["rows"], [("row", "model", "s"), ("ppl", "PPL", ".3f"), ("params", "params", ","),
                                         ("bytes_fp16", "bytes (fp16)", ","),
                                         ("kv_bytes_per_token_fp16", "KV bytes/token (fp16)", ","),
                                         ("q_heads_total", "query heads", "d"), ("kv_heads_total", "KV heads", "d"),
                                         ("mlp_channels_total", "MLP channels", ",")]))
    lines += ["", f"**Verdict:** {verdict(report['rows'])}"]
    if report.get("stopped_by_budget"):
        lines += ["", f"Stopped by the quality budget (forged PPL ≤ control × {1 + cfg['max_ppl_increase']:.3f}); "
                      f"kept cycle {report['accepted_cycle']}."]
    lines += ["", "## Per cycle", ""]
    per = [{"cycle": c["cycle"], "level": c["level"], "one_shot": c.get("one_shot", {}).get("ppl"),
            "forged": c["forged"]["ppl"], "control": c.get("control", {}).get("ppl"),
            "params": c["forged"]["params"]} for c in report["cycles"]]
    lines.append(_table(per, [("cycle", "cycle", "d"), ("level", "level", ".2f"),
                              ("one_shot", "PPL right after pruning", ".3f"), ("forged", "forged PPL", ".3f"),
                              ("control", "control PPL", ".3f"), ("params", "forged params", ",")]))
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


def write_plots(report: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    cycles = report["cycles"]
    names = []

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [c["cycle"] for c in cycles]
    ax.axhline(report["baseline"]["ppl"], color="gray", ls="--", label="baseline")
    if all("control" in c for c in cycles):
        ax.plot(xs, [c["control"]["ppl"] for c in cycles], "o-", label="unpruned control")
    ax.plot(xs, [c["forged"]["ppl"] for c in cycles], "o-", label="forged")
    ax.set(xlabel="cycle", ylabel="eval perplexity", title="Perplexity per cycle (held-out documents)",
           xticks=xs)
    ax.legend()
    names.append(_save(fig, folder / "ppl_per_cycle.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [c["forged"]["params"] / 1e6 for c in cycles], "o-", label="forged")
    ax.axhline(report["baseline"]["params"] / 1e6, color="gray", ls="--", label="base model")
    ax.set(xlabel="cycle", ylabel="parameters (M)", title="Forged model size per cycle", xticks=xs)
    ax.legend()
    names.append(_save(fig, folder / "params_per_cycle.png"))

    grids = {c["cycle"]: np.array(c["pruning"]["scores"], dtype=float) for c in cycles
             if c.get("pruning", {}).get("scores") is not None}
    if grids:  # one colour scale for every cycle, so cycles can be compared; grey = already removed
        values = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
        vmin, vmax = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
        for cycle, grid in grids.items():
            fig, ax = plt.subplots(figsize=(6, 6))
            im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set(xlabel="original query head", ylabel="layer",
                   title=f"Head importance before cycle {cycle} ({report['config']['prune']['criterion']})")
            fig.colorbar(im, ax=ax, label="score (same scale for every cycle)")
            ax.legend(handles=[_patch("lightgrey", "removed in an earlier cycle")], loc="upper right", fontsize=7)
            names.append(_save(fig, folder / f"importance_cycle_{cycle}.png"))

    base = report["baseline"]
    kept = np.zeros((len(base["q_heads"]), max(base["q_heads"])))
    final_layout = report["cycles"][report["accepted_cycle"]]["forged"].get("layout")
    if final_layout:
        for i, layer in enumerate(final_layout["layers"]):
            for h in layer["q_heads"]:
                origin = int(layer.get("clone_of", {}).get(str(h), h))
                kept[i, origin] += 1
        cloned = bool((kept > 1).any())
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(kept, aspect="auto", cmap="Greens", vmin=0, vmax=2)
        handles = [_patch(plt.get_cmap("Greens")(0.0), "removed"), _patch(plt.get_cmap("Greens")(0.5), "kept")]
        if cloned:
            handles.append(_patch(plt.get_cmap("Greens")(1.0), "kept + clone"))
        ax.legend(handles=handles, loc="upper right", fontsize=7)
        ax.set(xlabel="original query head", ylabel="layer",
               title="Kept query heads" + (" (dark: cloned by mitosis)" if cloned else ""))
        names.append(_save(fig, folder / "kept_heads.png"))
    final = report["cycles"][report["accepted_cycle"]]["forged"]
    if final.get("mlp_channels") and base.get("mlp_channels"):
        names.append(_shape_plot(plt, base, final, folder / "shape_per_layer.png"))
    return names


def _shape_plot(plt, base: dict, final: dict, path: Path) -> str:
    """Fraction of query heads, KV heads and MLP channels each layer keeps."""
    layers = np.arange(len(base["q_heads"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("q_heads", "query heads"), ("kv_heads", "KV heads"), ("mlp_channels", "MLP channels")):
        kept = np.array(final[key], dtype=float) / np.array(base[key], dtype=float)
        ax.plot(layers, kept, "o-", label=label, ms=3)
    ax.set(xlabel="layer", ylabel="fraction kept", ylim=(0, 1.05), title="Forged shape per layer")
    ax.legend()
    return _save(fig, path)


def _patch(color, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, edgecolor="grey", label=label)


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plots/{path.name}"


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
    report = finite({k: v for k, v in state.items() if k not in ("completed_cycle",)})
    report["rows"] = final_rows(state)
    report["versions"] = library_versions()
    report["device"] = device_facts(state["device"])
    report["plots"] = write_plots(report, folder / "plots")
    write_json(folder / "report.json", report)
    write_markdown(report, folder / "report.md")
    return report
