"""The Qwen2.5-Coder-0.5B section of docs/BENCHMARKS.md, from bench/results/qwen_*.json.

Kept beside the other sections' code but in its own file (one model, three scripts);
bench/make_tables.py passes in its own helpers so both render the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def qwen_section(load: Callable, provenance: Callable, table: Callable) -> list[str]:
    lines = ["## (e) A second real model: Qwen2.5-Coder-0.5B-Instruct (qwen2, code)", ""]
    parity, runtime, forge = load("qwen_parity.json"), load("qwen_runtime.json"), load("qwen_forge.json")
    if parity is None and runtime is None and forge is None:
        return lines + ["Not run yet: `python bench/qwen_parity.py`, `bench/qwen_runtime.py`, `bench/qwen_forge.py`.",
                        ""]
    if parity is not None:
        s, g = parity["seconds"], parity["greedy"]
        lines += provenance(parity, "qwen_parity.py", "qwen_parity.json")
        pull = parity.get("fresh_pull")
        lines += table(["check", "result", "goal"], [
            ["our torch load vs transformers' own GGUF load, max abs logit diff (fp32)",
             f"{parity['ours_vs_gguf_max_abs']:.3g}", f"<= {parity['goals']['ours_vs_gguf_max_abs']:g}"],
            ["MLX (converted, fp32) vs torch, max abs logit diff",
             f"{parity['mlx_vs_torch_max_abs']:.3g}", f"<= {parity['goals']['mlx_vs_torch_max_abs']:g}"],
            [f"{g['tokens']}-token greedy reply, torch vs MLX", "equal" if g["equal"] else "DIFFERENT", "equal"],
        ], "lrr")
        rows = [[k.replace("_", " "), f"{v:,.1f}"] for k, v in s.items()]
        if pull:
            rows.insert(0, [f"fresh pull (download {pull['gguf_bytes'] / 1e6:,.0f} MB GGUF in wheels, join, "
                            f"hash, dequantize)", f"{pull['seconds']:,.1f}"])
        lines += table(["step", "wall s"], rows)
        lines += [f"Greedy reply: `{g['mlx_text'].splitlines()[0]}` …", ""]
    if runtime is not None:
        p = runtime["planner_error"]
        lines += provenance(runtime, "qwen_runtime.py", "qwen_runtime.json")
        lines += [f"`sentinel verify` ({runtime['seconds']['verify']:.0f} s) and `sentinel plan` "
                  f"({runtime['seconds']['plan']:.1f} s) on the fp32 MLX folder; planner vs measured peak on the "
                  f"{p['backend']} backend (goal: {p['goal']}):", ""]
        lines += table(["context", "measured MiB", "predicted MiB", "error", "error above weights"], [
            [str(r["context"]), f"{r['measured_bytes'] / 2**20:,.1f}", f"{r['predicted_bytes'] / 2**20:,.1f}",
             f"{r['relative_error']:+.2%}", f"{r['above_weights_relative_error']:+.1%}"] for r in p["rows"]])
    if forge is not None:
        lines += provenance(forge, "qwen_forge.py", "qwen_forge.json")
        command = [Path(a).name if prev == "--out" else a for prev, a in zip([""] + forge["command"], forge["command"])]
        lines += [f"Command: `{' '.join(command)}` ({forge['wall_seconds'] / 60:.1f} min wall).", ""]
        lines += table(["row", "PPL", "params", "query heads", "KV heads", "MLP channels"], [
            [r["row"], f"{r['ppl']:.3f}", f"{r['params']:,}", str(r.get("q_heads_total")),
             str(r.get("kv_heads_total")), f"{r.get('mlp_channels_total') or 0:,}"] for r in forge["rows"]])
        for c in forge.get("cycles", []):
            lines.append(f"- cycle {c['cycle']} (target {c['target_params']:g}): {c['layout']}; one-shot PPL "
                         f"{c['one_shot_ppl']:,.1f}, after recovery {c['forged_ppl']:,.1f} (control {c['control_ppl']:.3f})")
        lines.append("")
    lines += _vocab_forge(load("qwen_forge_vocab.json"), "qwen_forge_vocab.json", provenance, table)
    rerun = load("qwen_forge_vocab_lr.json")
    return lines + (_vocab_forge(rerun, "qwen_forge_vocab_lr.json", provenance, table) if rerun else [])


def _vocab_forge(forge: dict | None, name: str, provenance: Callable, table: Callable) -> list[str]:
    """The domain-vocabulary forge to 0.65 (bits per byte: the forged tokenizer is smaller)."""
    lines = [f"### Qwen2.5-Coder-0.5B forged to 0.65 with the domain vocabulary (`{name}`)", ""]
    if forge is None:
        return lines + ["Not run yet: `python bench/qwen_forge.py`.", ""]
    lines += provenance(forge, "qwen_forge.py", name)
    command = [Path(a).name if prev == "--out" else a for prev, a in zip([""] + forge["command"], forge["command"])]
    lines += [f"Command: `{' '.join(command)}` ({forge['wall_seconds'] / 60:.1f} min wall).", ""]
    rows = {r["row"]: r for r in forge["rows"]}
    control = rows.get("unpruned control")
    ood = {r["row"]: r for r in forge.get("ood_rows") or []}
    lines += table(["row", "bits/byte", "x control", "PPL", "docs bits/byte", "params", "vocabulary"], [
        [r["row"], f"{r['bpb']:.4f}", f"{r['bpb'] / control['bpb']:.3f}" if control else "", f"{r['ppl']:.3f}",
         f"{ood[r['row']]['bpb']:.4f}" if r["row"] in ood else "", f"{r['params']:,}", f"{r.get('vocab_size') or 0:,}"]
        for r in forge["rows"]])
    if forge.get("stage0"):
        lines.append(f"- stage 0 (domain training: the teacher, and where both tracks start): "
                     f"{forge['stage0']['bpb']:.4f} bits/byte (PPL {forge['stage0']['ppl']:.3f})")
    for c in forge.get("cycles", []):
        local = f", after block-local {c['after_blocklocal_bpb']:.4f}" if c.get("after_blocklocal_bpb") else ""
        lines.append(f"- cycle {c['cycle']} (target {c['target_params']:.4f}): {c['layout']}; bits/byte one-shot "
                     f"{c['one_shot_bpb']:.4f}{local}, after recovery {c['forged_bpb']:.4f}"
                     + (f" (control {c['control_bpb']:.4f})" if c.get("control_bpb") else ""))
    return lines + [""]
