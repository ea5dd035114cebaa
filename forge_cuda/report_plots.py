"""The forge report's PNG plots, drawn from report.json only.

Legends sit outside the axes (never over data); removed units have their own colour
(not the background's); one colour scale across cycles, so cycles compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REMOVED, KEPT, CLONED = "#d62728", "#2ca02c", "#0b4f1c"  # red, green, dark green


def _integer_layers(ax, axis: str = "y") -> None:
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _legend(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def _patch(color, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, edgecolor="grey", label=label)


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"plots/{path.name}"


def write_plots(report: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = [_per_cycle(plt, report, folder), _params(plt, report, folder)]
    curve = _curve(plt, report, folder)
    if curve:
        names.append(curve)
    names += _importance(plt, report, folder)
    final = report["cycles"][report["accepted_cycle"]]["forged"]
    if final.get("layout"):
        names.append(_kept_heads(plt, report, final["layout"], folder / "kept_heads.png"))
    base = report["baseline"]
    if final.get("mlp_channels") and base.get("mlp_channels") and any(final["mlp_channels"]):
        names.append(_shape_plot(plt, base, final, folder / "shape_per_layer.png"))
        if final["mlp_channels_total"] < base["mlp_channels_total"]:
            names.append(_channels(plt, report, final["layout"], folder / "channels.png"))
    return names


def _metric(row: dict) -> tuple[str, float | None]:
    return ("bpb", row.get("bpb")) if row.get("bpb") is not None else ("ppl", row.get("ppl"))


def _per_cycle(plt, report: dict, folder: Path) -> str:
    cycles = report["cycles"]
    key, base_value = _metric(report["baseline"])
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [c["cycle"] for c in cycles]
    ax.axhline(base_value, color="gray", ls="--", label="baseline")
    if all("control" in c for c in cycles):
        ax.plot(xs, [c["control"].get(key) for c in cycles], "o-", label="unpruned control")
    ax.plot(xs, [c["forged"].get(key) for c in cycles], "o-", label="forged")
    label = "bits per byte" if key == "bpb" else "perplexity"
    ax.set(xlabel="cycle", ylabel=f"held-out {label}", title=f"Held-out {label} per cycle", xticks=xs)
    _legend(ax)
    return _save(fig, folder / "quality_per_cycle.png")


def _params(plt, report: dict, folder: Path) -> str:
    cycles = report["cycles"]
    xs = [c["cycle"] for c in cycles]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [c["forged"]["params"] / 1e6 for c in cycles], "o-", label="forged")
    ax.axhline(report["baseline"]["params"] / 1e6, color="gray", ls="--", label="base model")
    ax.set(xlabel="cycle", ylabel="parameters (M)", title="Forged model size per cycle", xticks=xs)
    _legend(ax)
    return _save(fig, folder / "params_per_cycle.png")


def _curve(plt, report: dict, folder: Path) -> str | None:
    """bpb against recovery tokens: every curve point of every cycle, forged and control."""
    tracks = {"forged": [], "control": []}
    for c in report["cycles"]:
        for track, points in c.get("curve", {}).items():
            tracks[track] += [p for p in points if p.get("bpb") is not None]
    if not tracks["forged"]:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for track, style in (("forged", "o-"), ("control", "s-")):
        points = tracks[track]
        if points:
            ax.plot([p["tokens"] / 1e3 for p in points], [p["bpb"] for p in points], style, ms=3,
                    label="forged (pruned → block-local → KD)" if track == "forged" else "unpruned control (labels)")
    if report["baseline"].get("bpb") is not None:
        ax.axhline(report["baseline"]["bpb"], color="gray", ls="--", label="untuned base (full eval)")
    ax.set(xlabel="recovery tokens (thousands)", ylabel="bits per byte (curve subset of the eval)",
           title="Recovery curve")
    _legend(ax)
    return _save(fig, folder / "recovery_curve.png")


def _importance(plt, report: dict, folder: Path) -> list[str]:
    grids = {c["cycle"]: np.array(c["pruning"]["scores"], dtype=float) for c in report["cycles"]
             if c.get("pruning", {}).get("scores") is not None}
    if not grids:
        return []
    values = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    vmin, vmax = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    cmap = plt.get_cmap("viridis").with_extremes(bad=REMOVED)
    names = []
    for cycle, grid in grids.items():
        fig, ax = plt.subplots(figsize=(6, 6))
        im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set(xlabel="original query head", ylabel="layer",
               title=f"Head importance before cycle {cycle} ({report['config']['prune']['criterion']})")
        fig.colorbar(im, ax=ax, label="score (same scale for every cycle)", location="left")
        ax.legend(handles=[_patch(REMOVED, "removed in an earlier cycle")], loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), fontsize=8)
        names.append(_save(fig, folder / f"importance_cycle_{cycle}.png"))
    return names


def _kept_heads(plt, report: dict, layout: dict, path: Path) -> str:
    from matplotlib.colors import ListedColormap

    base = report["baseline"]
    kept = np.zeros((len(base["q_heads"]), max(base["q_heads"])))
    for i, layer in enumerate(layout["layers"]):
        for h in layer["q_heads"]:
            kept[i, int(layer.get("clone_of", {}).get(str(h), h))] += 1
    cloned = bool((kept > 1).any())
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(np.minimum(kept, 2), aspect="auto", cmap=ListedColormap([REMOVED, KEPT, CLONED]), vmin=0, vmax=2,
              interpolation="nearest")
    handles = [_patch(REMOVED, "removed"), _patch(KEPT, "kept")] + ([_patch(CLONED, "kept + clone")] if cloned else [])
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    ax.set(xlabel="original query head", ylabel="layer", title="Kept query heads")
    _integer_layers(ax)
    _integer_layers(ax, "x")
    return _save(fig, path)


def _channels(plt, report: dict, layout: dict, path: Path) -> str:
    """Left: which original MLP channels each layer kept. Right: mean channel importance per layer, per cycle."""
    from matplotlib.colors import ListedColormap

    from sentinel.ranges import read_index_list

    widths = report["baseline"]["mlp_channels"]
    grid = np.zeros((len(widths), max(w or 0 for w in widths)))
    for i, layer in enumerate(layout["layers"]):
        ids = read_index_list(layer["mlp_channels"], "mlp_channels", True) if "mlp_channels" in layer \
            else range(widths[i] or 0)
        grid[i, list(ids)] = 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 2]})
    left.imshow(grid, aspect="auto", cmap=ListedColormap([REMOVED, KEPT]), vmin=0, vmax=1, interpolation="nearest")
    left.set(xlabel="original MLP channel", ylabel="layer", title="Kept MLP channels")
    for c in report["cycles"]:
        scores = (c.get("pruning") or {}).get("channel_scores")
        if scores:
            right.plot([s if s is not None else np.nan for s in scores], range(len(scores)), "o-", ms=3,
                       label=f"before cycle {c['cycle']}")
    right.invert_yaxis()
    _integer_layers(left)
    _integer_layers(right)
    right.set(xlabel="mean channel score", ylabel="layer", title="MLP channel importance")
    handles = [_patch(REMOVED, "removed"), _patch(KEPT, "kept")] + right.get_legend_handles_labels()[0]
    right.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _save(fig, path)


def _shape_plot(plt, base: dict, final: dict, path: Path) -> str:
    """Fraction of query heads, KV heads and MLP channels each layer keeps."""
    layers = np.arange(len(base["q_heads"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("q_heads", "query heads"), ("kv_heads", "KV heads"), ("mlp_channels", "MLP channels")):
        kept = np.array(final[key], dtype=float) / np.array(base[key], dtype=float)
        ax.plot(layers, kept, "o-", label=label, ms=3)
    ax.set(xlabel="layer", ylabel="fraction kept", ylim=(0, 1.05), title="Forged shape per layer")
    _legend(ax)
    return _save(fig, path)
