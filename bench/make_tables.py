"""Regenerate docs/BENCHMARKS.md from the JSON files under bench/results/ (nothing typed by hand).

    python bench/make_tables.py

Each section names the script that produced its JSON and the run's machine,
date, versions and settings; a missing JSON is reported as not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "BENCHMARKS.md"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(r: dict, script: str, name: str) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items() if v)
    if not versions:  # bench/runtime_speed.py records its versions flat
        versions = f"mlx {r.get('mlx')}, mlx-lm {r.get('mlx_lm')}"
    lines = [f"Source: `bench/results/{name}`, written by `python bench/{script}` on {r.get('date')}; "
             f"machine: {r.get('machine')}; {versions}."]
    if r.get("note"):
        lines.append(f"Note: {r['note']}.")
    return lines + [""]


def table(head: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(head) + " |", sep] + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def missing(script: str) -> list[str]:
    return [f"Not run yet: `python bench/{script}`.", ""]


def criteria_section() -> list[str]:
    lines = ["## (a) Importance criteria x prune levels (SmolLM2-135M, code)", ""]
    r = load("prune_criteria.json")
    if r is None:
        return lines + missing("prune_criteria.py")
    s = r["settings"]
    lines += provenance(r, "prune_criteria.py", "prune_criteria.json")
    lines += [f"Settings: held-out eval {r['baseline']['tokens']:,} tokens in windows of {s['seq_len']} "
              f"(documents never used for calibration or training); importance from {s['calib_windows']} "
              f"calibration windows; GQA-aware selection, defrag (`prune_once`, the forge's pruning step); "
              f"recovery and control: {s['steps']} LoRA steps (rank {s['lora']['lora_rank']}, batch "
              f"{s['batch_size']} x {s['seq_len']}, lr {s['lora']['lr']}, seed {s['lora']['seed']}), same windows. "
              "Level = fraction of query heads removed.", ""]
    base, ctrl = r["baseline"], r.get("control")
    rows = [["baseline", "–", f"{base['ppl']:.3f}", f"{base['params']:,}", str(base["q_heads"]),
             str(base["kv_heads"])]]
    if ctrl:
        rows.append(["LoRA-only control", "–", f"{ctrl['ppl']:.3f}", f"{ctrl['params']:,}", str(ctrl["q_heads"]),
                     str(ctrl["kv_heads"])])
    for o in r["one_shot"]:
        rows.append([f"one-shot `{o['criterion']}`", f"{o['level']:.2f}", f"{o['ppl']:.3f}", f"{o['params']:,}",
                     str(o["q_heads"]), str(o["kv_heads"])])
    for o in r.get("recovered", []):
        rows.append([f"`{o['criterion']}` + recovery", f"{o['level']:.2f}", f"{o['ppl']:.3f}", f"{o['params']:,}",
                     str(o["q_heads"]), str(o["kv_heads"])])
    lines += table(["model", "level", "PPL", "params", "query heads", "KV heads"], rows, "lrrrrr")
    if not r.get("complete"):
        lines += ["(Partial run: the rows above are all that finished.)", ""]
    return lines


def speed_section() -> list[str]:
    lines = ["## (b) Runtime speed", "", "### Our runtime vs stock mlx-lm (same unpruned weights)", ""]
    r = load("runtime_speed.json")
    if r is None:
        lines += missing("runtime_speed.py")
    else:
        lines += provenance(r, "runtime_speed.py", "runtime_speed.json")
        m = r["median_tps"]
        lines += [f"Model: {r['model']}; {r['prompt_tokens']} prompt tokens, {r['generation_tokens']} decoded, "
                  f"{r['repeats']} interleaved repeats (medians); device {r['device']}. Goal: ratio >= 0.98.", ""]
        lines += table(["phase", "ours tok/s", "stock tok/s", "ratio ours/stock", "paired ratio"], [
            ["prefill", f"{m['ours']['prefill']:.2f}", f"{m['stock']['prefill']:.2f}", f"{r['ratio_prefill']:.3f}",
             f"{r['paired_ratio_prefill']:.3f}"],
            ["decode", f"{m['ours']['decode']:.2f}", f"{m['stock']['decode']:.2f}", f"{r['ratio_decode']:.3f}",
             f"{r['paired_ratio_decode']:.3f}"]])
    lines += ["### Decode speed-up of pruned vs unpruned against the byte ratio", ""]
    p = load("pruned_speed.json")
    if p is None:
        return lines + missing("pruned_speed.py")
    lines += provenance(p, "pruned_speed.py", "pruned_speed.json")
    lines += [f"Model: {p['model']} {p['dtype']}, pruned one-shot (`{p['criterion']}`, level {p['prune_level']}: "
              f"{p['layout']}); {p['prompt_tokens']} prompt tokens, {p['decode_tokens']} decoded, {p['repeats']} "
              "interleaved repeats. Bytes per decoded token = weights + KV cache at the context. "
              "Goal: efficiency = speed-up / byte ratio >= 0.9.", ""]
    b, med = p["bytes_per_decoded_token"], p["decode_tps_median"]
    lines += table(["model", "weights (bytes)", "bytes / decoded token", "decode tok/s (median)"], [
        ["unpruned", f"{p['weight_bytes']['unpruned']:,}", f"{b['unpruned']:,}", f"{med['unpruned']:.2f}"],
        ["pruned", f"{p['weight_bytes']['pruned']:,}", f"{b['pruned']:,}", f"{med['pruned']:.2f}"]])
    lines += table(["byte ratio", "speed-up (medians)", "speed-up (paired)", "efficiency", "efficiency (paired)"], [
        [f"{p['byte_ratio']:.3f}", f"{p['speedup']:.3f}", f"{p['paired_speedup']:.3f}", f"{p['efficiency']:.3f}",
         f"{p['paired_efficiency']:.3f}"]], "rrrrr")
    return lines


def planner_section() -> list[str]:
    lines = ["## (c) Planner error (predicted vs measured peak memory)", ""]
    r = load("planner_error.json")
    if r is None:
        return lines + missing("planner_error.py")
    lines += provenance(r, "planner_error.py", "planner_error.json")
    lines += [f"Measured with `sentinel verify`'s measurement (mx.reset_peak_memory before each run, "
              f"{r['real']['rows'][0]['decode_tokens']} decoded tokens after a prompt of `context` tokens) on the "
              f"{r['real']['backend']} backend; predicted by `runtime_mlx.planner` for the same backend. "
              f"Goal: {r['goal']}. \"Above weights\" is the error relative to the measured peak minus the "
              "weights (KV cache + activations), the part the formula has to model.", ""]
    rows = []
    for key in ("real", "tiny"):
        part = r[key]
        for row in part["rows"]:
            rows.append([part["model"], str(row["context"]), f"{row['measured_bytes'] / 2**20:,.2f}",
                         f"{row['predicted_bytes'] / 2**20:,.2f}", f"{row['relative_error']:+.2%}",
                         f"{row['above_weights_relative_error']:+.1%}"])
    return lines + table(["model", "context", "measured MiB", "predicted MiB", "error", "error above weights"],
                         rows, "lrrrrr")


def gguf_section() -> list[str]:
    lines = ["## (d) llama.cpp (GGUF): forged vs unpruned decode, and llama.cpp vs our MLX runtime", ""]
    r = load("gguf_speed.json")
    if r is None:
        return lines + missing("gguf_speed.py")
    lines += provenance(r, "gguf_speed.py", "gguf_speed.json")
    lines += [f"Model: {r['model']} pruned one-shot to {r['target_params']:g} of its parameters ({r['criterion']}: "
              f"{r['layout']}); GGUF {r['outtype']} (`{r['architecture']['unpruned']}` vs "
              f"`{r['architecture']['forged']}`), llama.cpp {r['llama_cpp']}; {r['prompt_tokens']} prompt tokens, "
              f"{r['decode_tokens']} greedy tokens decoded, {r['repeats']} interleaved repeats.", ""]
    b, med = r["gguf_bytes"], r["decode_tps_median"]
    lines += table(["model", "params", "GGUF bytes", "decode tok/s (median)"], [
        [k, f"{r['params'][k]:,}", f"{b[k]:,}", f"{med[k]:.2f}"] for k in ("unpruned", "forged")], "lrrr")
    lines += table(["byte ratio", "speed-up (medians)", "speed-up (paired)"],
                   [[f"{r['byte_ratio']:.3f}", f"{r['speedup']:.3f}", f"{r['paired_speedup']:.3f}"]], "rrr")
    lines += [f"Greedy {r['greedy_tokens']}-token continuation of `{r['greedy_prompt'].splitlines()[0]}`, llama.cpp "
              "(f32 GGUF) vs our MLX runtime (fp32), same prompt ids:", ""]
    lines += table(["model", "tokens equal", "text equal", "llama.cpp text"], [
        [k, str(v["tokens_equal"]), str(v["text_equal"]), "`" + v["llama_cpp"].replace("\n", "⏎")[:60] + "`"]
        for k, v in r["greedy_text_check"].items()], "llll")
    return lines


def main() -> None:
    lines = ["# Benchmarks", "",
             "Generated by `python bench/make_tables.py` from the JSON files in `bench/results/`; every number "
             "below is read from those files, which the bench scripts write. Do not edit by hand. The scripts "
             "are not tests and never run in CI; rerun one, then this command.", ""]
    from qwen_tables import qwen_section  # bench/ is sys.path[0] when run as a script

    lines += criteria_section() + speed_section() + planner_section() + gguf_section()
    lines += qwen_section(load, provenance, table)
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
