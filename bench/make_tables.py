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


def width_distill_section() -> list[str]:
    lines = ["## (f) Width pruning to a size target, recovered by distillation vs LoRA (SmolLM2-135M, code)", ""]
    r = load("width_distill.json")
    if r is None:
        return lines + missing("width_distill.py")
    s, d = r["settings"], r["data"]
    lines += provenance(r, "width_distill.py", "width_distill.json")
    lines += [f"Settings: held-out eval {d['eval']['tokens']:,} tokens of {d['eval']['documents']} documents in "
              f"windows of {s['seq_len']} (never used for training or calibration); `{s['criterion']}` importance "
              f"from {s['calib_windows']} calibration windows, one selection over query heads, KV groups and MLP "
              f"channels (`prune_once`), cycles of <= 10% of the parameters; stage 0 = the teacher: {s['steps']} "
              f"full-parameter steps on labels (batch {s['batch_size']} x {s['seq_len']}, lr {s.get('lr_stage0', s['lr_full'])}); the "
              f"control trains the teacher {s['steps']} more steps (labels, no pruning); each forged row starts from "
              f"the teacher and splits the same {s['steps']} steps over its cycles: `distill` = full-parameter KL to "
              f"the teacher (lr {s['lr_full']}), `lora` = LoRA on labels (lr {s['lr_lora']}). "
              "x control = PPL / the control's PPL; wall time includes pruning and evaluation.", ""]
    ctrl = next((x for x in r["rows"] if x["row"] == "unpruned control"), None)
    rows = []
    for x in r["rows"]:
        vs = f"{x['ppl'] / ctrl['ppl']:.2f}" if ctrl else "–"
        rows.append([x["row"], f"{x['ppl']:.3f}", vs, f"{x['params']:,}", f"{x['bytes_fp16']:,}",
                     f"{x['train_tokens']:,}", f"{x['seconds']:.0f}"])
    lines += table(["model", "PPL", "x control", "params", "bytes fp16", "train tokens", "wall time s"], rows)
    shaped = [x for x in r["rows"] if "shape" in x]
    if shaped:
        def span(v: list[int]) -> str:
            return f"{min(v)}–{max(v)}"

        lines += ["Shape after pruning (per layer: min–max over the layers; base: "
                  f"{r['rows'][0]['q_heads']} query heads, {r['rows'][0]['kv_heads']} KV heads, "
                  f"{r['rows'][0]['mlp_channels']:,} MLP channels in all):", ""]
        lines += table(["model", "cycles", "PPL before last recovery", "query heads", "per layer", "KV heads",
                        "per layer", "MLP channels", "per layer"], [
            [x["row"], str(x["cycles"]), f"{x['ppl_before_last_recovery']:.3f}", str(x["q_heads"]),
             span(x["shape"]["q_heads"]), str(x["kv_heads"]), span(x["shape"]["kv_heads"]),
             f"{x['mlp_channels']:,}", span(x["shape"]["mlp_channels"])] for x in shaped])
    if not r.get("complete"):
        lines += ["(Partial run: the rows above are all that finished.)", ""]
    return lines


def quant_prune_section() -> list[str]:
    lines = ["## (g) Bytes vs perplexity: quantization and width pruning (our converter, our runtime)", ""]
    r = load("quant_vs_prune.json")
    if r is None:
        return lines + missing("quant_vs_prune.py")
    e = r["eval"]
    lines += provenance(r, "quant_vs_prune.py", "quant_vs_prune.json")
    lines += [f"Each model converted by `convert_to_mlx` (float16; MLX affine quantization at 8 / 4 bits, group "
              f"size {r['group_size']}), loaded by `runtime_mlx`, scored on the same held-out windows as (f) "
              f"({e['windows']} windows of {e['seq_len']}, rebuilt from width_distill.json's settings; sha256 "
              f"`{e['sha256'][:12]}`). Compute: {r['compute_note']}. Bytes = the model*.safetensors files on disk.",
              ""]
    t = r.get("torch_fp32_base")
    if t:
        lines += [f"Cross-check: torch fp32 on the base model gives PPL {t['ppl']:.3f} on {t['tokens']:,} tokens "
                  f"(width bench baseline: {t['width_bench_baseline_ppl']:.3f} on "
                  f"{t['width_bench_baseline_tokens']:,}).", ""]
    ref = next((x for x in r["rows"] if x["model"] == "base" and x["format"] == "fp16"), None)
    rows = []
    for x in r["rows"]:
        rows.append([x["model"], x["format"], f"{x['weight_bytes']:,}",
                     f"{x['weight_bytes'] / ref['weight_bytes']:.3f}" if ref else "–", f"{x['ppl']:.3f}",
                     f"{x['ppl'] / ref['ppl']:.2f}" if ref else "–", f"{x['tokens']:,}"])
    lines += table(["model", "format", "bytes on disk", "x base fp16 bytes", "PPL", "x base fp16 PPL", "tokens"],
                   rows, "llrrrrr")
    checks = [x for x in r["rows"] if x.get("kernel_check")]
    if checks:
        lines += ["Kernel check (first windows only): MLX's own quantized matmul vs the dequantized float32 "
                  "weights used above:", ""]
        lines += table(["model", "format", "tokens", "quantized kernel PPL", "dequantized PPL"], [
            [x["model"], x["format"], f"{x['kernel_check']['tokens']:,}",
             f"{x['kernel_check']['quantized_kernel_fp32_ppl']:.4f}",
             f"{x['kernel_check']['dequantized_fp32_ppl']:.4f}"] for x in checks], "llrrr")
    if not r.get("complete"):
        lines += ["(Partial run: the rows above are all that finished.)", ""]
    return lines


def width_speed_section() -> list[str]:
    lines = ["## (h) Forged 0.75 vs unpruned: measured speed against the byte ratio", ""]
    r = load("width_speed.json")
    if r is None:
        return lines + missing("width_speed.py")
    lines += provenance(r, "width_speed.py", "width_speed.json")
    dt = ", ".join(f"{k} {v}" for k, v in r["compute_dtype"].items())
    lines += [f"Model: `{r['label']}` from width_distill.py vs the unpruned SmolLM2-135M, both converted "
              f"{r['stored_dtype']} by our converter and run by our runtime on the {r['backend']} backend (compute: "
              f"{dt}) with `sentinel verify`'s run; {r['prompt_tokens']} prompt tokens, {r['decode_tokens']} "
              f"decoded, {r['repeats']} repeats in {r['order']}. Byte ratio = bytes read per decoded token "
              f"(weights + KV cache at the context), unpruned / forged. Goal: {r['goal']}.", ""]
    med, w = r["median_tps"], r["weight_bytes"]
    lines += table(["model", "weights (bytes, fp16)", "prefill tok/s (median)", "decode tok/s (median)"], [
        [k, f"{w[k]:,}", f"{med['prompt'][k]:.2f}", f"{med['decode'][k]:.2f}"] for k in ("unpruned", "forged")])
    lines += table(["byte ratio", "decode speed-up", "paired", "efficiency", "efficiency (paired)",
                    "prefill speed-up", "paired"], [
        [f"{r['byte_ratio']:.3f}", f"{r['speedup']['decode']:.3f}", f"{r['paired_speedup']['decode']:.3f}",
         f"{r['efficiency']:.3f}", f"{r['paired_efficiency']:.3f}", f"{r['speedup']['prompt']:.3f}",
         f"{r['paired_speedup']['prompt']:.3f}"]], "rrrrrrr")
    st = r["stock_mlx_lm"]
    text = (st["text"] or "").replace("\n", "⏎")[:80]
    lines += [f"Stock mlx-lm on the forged folder (shim `model_file`: {r['model_file']}): `{st['command']}` -> exit "
              f"{st['returncode']}, text `{text}`; same greedy text as our runtime: {st['same_as_ours']}.", ""]
    return lines


def oneshot_width_section() -> list[str]:
    lines = ["## (i) One-shot width pruning to 0.75: criterion x score balance x refit (SmolLM2-135M, code)", ""]
    r = load("oneshot_width.json")
    if r is None:
        return lines + ["Not run yet: `python bench/oneshot_width.py`.", ""]
    lines += provenance(r, "oneshot_width.py", "oneshot_width.json")
    st = r["settings"]
    lines += [f"Every row starts from the base model and prunes to {st['target']:g} of its parameters in one step "
              f"(no training); {st['calib_windows']} calibration windows of {st['seq_len']} tokens; held-out eval "
              f"{r['rows'][0].get('eval_tokens', st['eval_tokens']):,} tokens (the same windows as (f)).", ""]
    base = r["rows"][0]["ppl"]
    lines += table(["row", "PPL", "x baseline", "params", "query heads", "KV heads", "MLP channels", "seconds"],
                   [[x["row"], f"{x['ppl']:.3f}", f"{x['ppl'] / base:.2f}", f"{x['params']:,}", str(x["q_heads"]),
                     str(x["kv_heads"]), f"{x['mlp_channels']:,}", f"{x['seconds']:.0f}"] for x in r["rows"]])
    return lines


def bytes_bpb_section() -> list[str]:
    """Only once bench/bytes_vs_bpb.py has written its JSON (no "not run" stub: the other sections stay as they are)."""
    r = load("bytes_vs_bpb.json")
    if r is None:
        return []
    s, d = r["settings"], r["documents"]
    lines = ["## (m) Bytes vs bits per byte: quantization x forging (our converter, our runtime)", ""]
    lines += provenance(r, "bytes_vs_bpb.py", "bytes_vs_bpb.json")
    lines += [f"Each model converted by `convert_to_mlx` (float16; MLX affine quantization at 8 / 6 / 4 bits, group "
              f"size {s['group_size']}), loaded by `runtime_mlx`, scored on the same {d['count']} held-out "
              f"`{s['domain']}` documents ({d['text_bytes']:,} bytes, {s['eval_tokens']:,} base tokens, windows of "
              f"{s['seq_len']}; the forge's eval split, sha256 `{d['sha256'][:12]}`), each through its own tokenizer. "
              f"Bits per byte = NLL over the bytes of the predicted tokens. Compute: {r['compute_note']}. Weight MB "
              "= the model*.safetensors files on disk (10^6 bytes). Pareto: no other row is as small and as good.", ""]
    t = r.get("torch_fp32_base")
    if t:
        b = t.get("results_json_baseline_bpb")
        lines += [f"Cross-check: torch fp32 on the base model (`forge_cuda.evaluate.perplexity`): {t['bpb']:.4f} "
                  f"bits/byte on {t['tokens']:,} tokens" + (f" (`{Path(r['settings_json']).name}` baseline row: "
                  f"{b:.4f} on {t['results_json_baseline_tokens']:,})" if b is not None else "") + ".", ""]
    lines += table(["model", "format", "weight MB", "bits/byte", "PPL", "on the Pareto front"],
                   [[x["label"], x["format"], f"{x['weight_bytes'] / 1e6:.2f}", f"{x['bpb']:.4f}", f"{x['ppl']:.3f}",
                     "yes" if x["pareto"] else ""] for x in r["rows"]], "llrrrl")
    if not r.get("complete"):
        lines += ["(Partial run: the rows above are all that finished.)", ""]
    return lines


def main() -> None:
    lines = ["# Benchmarks", "",
             "Generated by `python bench/make_tables.py` from the JSON files in `bench/results/`; every number "
             "below is read from those files, which the bench scripts write. Do not edit by hand. The scripts "
             "are not tests and never run in CI; rerun one, then this command.", ""]
    from qwen_tables import qwen_section  # bench/ is sys.path[0] when run as a script

    lines += criteria_section() + speed_section() + planner_section() + gguf_section()
    lines += qwen_section(load, provenance, table)
    lines += width_distill_section()
    lines += quant_prune_section()
    lines += width_speed_section()
    lines += oneshot_width_section()
    from vocab_tables import blocklocal_section, recovery_section, vocab_section

    for section in (vocab_section, blocklocal_section, recovery_section):
        lines += section(load, provenance, table)
    lines += bytes_bpb_section()
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    from gpu_check_tables import render  # docs/GPU.md: measured on a GPU, or marked not measured

    render()


if __name__ == "__main__":
    main()
