"""docs/BENCHMARKS.md sections for the domain vocabulary and block-local recovery, from bench/results/*.json.

Kept apart from make_tables.py (which passes in its helpers so every section renders
the same way): (j) the vocabulary alone, per model; (k) block-local distillation's loss
at one short setting; (l) recovery at a budget, when bench/recovery_budget.py has run.
"""

from __future__ import annotations

from typing import Callable

VOCAB_MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b")


def _vocab_rows(r: dict) -> list[list[str]]:
    base = r["rows"][0]
    out = []
    for x in r["rows"]:
        rel = {d: x[d]["bpb"] / base[d]["bpb"] - 1 for d in (r["domain"], r["ood"])}
        out.append([x["row"], f"{x['params']:,}", f"{x['params'] / base['params']:.3f}", f"{x['bytes_fp16']:,}",
                    f"{x['kept_tokens']:,}", f"{x[r['domain']]['bpb']:.4f}", f"{100 * rel[r['domain']]:+.2f}%",
                    f"{x[r['ood']]['bpb']:.4f}", f"{100 * rel[r['ood']]:+.2f}%"])
    return out


def vocab_section(load: Callable, provenance: Callable, table: Callable) -> list[str]:
    lines = ["## (j) The domain vocabulary alone (one-shot, no training)", ""]
    found = False
    for model in VOCAB_MODELS:
        name = f"vocab_only_{model}.json"
        r = load(name)
        if r is None:
            lines += [f"{model}: not run yet (`python bench/vocab_only.py --model {model}`).", ""]
            continue
        found = True
        lines += [f"### {r['model']}", ""] + provenance(r, "vocab_only.py", name)
        st = r["settings"]
        lines += [f"Token ids counted on the {r['domain']} domain's train + calibration documents "
                  f"({r['counted_tokens']:,} tokens); every row is scored on the same held-out documents with its "
                  f"own tokenizer ({st['eval_tokens']:,} base-tokenizer tokens per domain, windows of "
                  f"{st['seq_len']}); out of domain: `{r['ood']}`. Bits per byte compare across tokenizers; PPL "
                  "does not.", ""]
        lines += table(["row", "params", "x base", "fp16 bytes", "tokens kept", f"{r['domain']} bits/byte",
                        "vs base", f"{r['ood']} bits/byte", "vs base"], _vocab_rows(r))
    if found:
        lines += ["Rows the domain never uses go first and cost nothing measurable on the domain; the cost "
                  "outside it (English prose) is the out-of-domain column.", ""]
    return lines


def blocklocal_section(load: Callable, provenance: Callable, table: Callable) -> list[str]:
    lines = ["## (k) Block-local distillation: normalised MSE vs cosine (SmolLM2-135M, code, short run)", ""]
    r = load("blocklocal_loss.json")
    if r is None:
        return lines + ["Not run yet: `python bench/blocklocal_loss.py`.", ""]
    lines += provenance(r, "blocklocal_loss.py", "blocklocal_loss.json")
    st = r["settings"]
    lines += [f"One-shot prune to {st['target_params']:g} of the parameters (taylor, layer balance, refit), then "
              f"{st['steps']} block-local steps of {st['batch_size']} x {st['seq_len']} tokens per block; held-out "
              f"{st['eval_tokens']:,} tokens. One short setting: it ranks the two losses, it says nothing about "
              "a real budget (see (l)).", ""]
    lines += table(["row", "bits/byte", "PPL", "params", "seconds"],
                   [[x["row"], f"{x['bpb']:.4f}", f"{x['ppl']:.2f}", f"{x['params']:,}",
                     f"{x['seconds']:.0f}" if "seconds" in x else ""] for x in r["rows"]])
    return lines


def recovery_section(load: Callable, provenance: Callable, table: Callable) -> list[str]:
    lines = ["## (l) Recovery at a budget: block-local + KD vs KD alone at equal wall time", ""]
    r = load("recovery_budget.json")
    if r is None:
        return lines + ["Not run yet: `python bench/recovery_budget.py --budget 45m` (about four 45-minute rows "
                        "on a quiet 2-core machine).", ""]
    lines += provenance(r, "recovery_budget.py", "recovery_budget.json")
    st, rows = r["settings"], {x["row"]: x for x in r["rows"]}
    control = rows.get("control (equal wall time)")
    lines += [f"SmolLM2-135M, `--domain code`, `--target-params {st['target_params']}` with `--vocab {st['vocab']}`; "
              f"stage 0 = {st['stage0_steps']} steps of {st['batch_size']} x {st['seq_len']} on labels; recovery "
              f"budget `{st['budget']}` per forged row (block-local share {st['blocklocal_share']:g} in the second, "
              f"loss {st['blocklocal_loss']}); the control trains the stage-0 model on labels for the longest forged "
              f"row's recovery wall time. Held-out {st['eval_tokens']:,} tokens of code; docs = out-of-domain prose.",
              ""]

    def cells(x: dict) -> list[str]:
        ratio = f"{x['bpb'] / control['bpb']:.3f}" if control else ""
        ood = (x.get("ood") or {}).get("bpb")
        return [x["row"], f"{x['bpb']:.4f}", f"{x['ppl']:.3f}", ratio, f"{ood:.4f}" if ood else "",
                f"{x.get('params', 0):,}", f"{x['recovery_tokens']:,}" if "recovery_tokens" in x else "",
                f"{x.get('recovery_seconds', x.get('seconds', 0)) / 60:.1f}" if "recovery_tokens" in x else ""]

    variants, sources = _variants(r, load)
    if sources:
        lines += [f"Rows marked with a setting come from the same bench run with that one setting changed "
                  f"({', '.join(f'`bench/results/{n}`' for n in sources)}).", ""]
    lines += table(["row", "bits/byte", "PPL", "x control", "docs bits/byte", "params", "recovery tokens",
                    "recovery min"], [cells(x) for x in r["rows"] + variants], "lrrrrrrr")
    for x in r["rows"] + variants:
        if x.get("curve"):
            points = ", ".join(f"{p['tokens'] / 1000:.1f}k: {p['bpb']:.4f}" for p in x["curve"])
            lines.append(f"- {x['row']}, bits/byte against recovery tokens (first {st['curve_eval_tokens']:,} "
                         f"held-out tokens; a token count repeats where a new cycle's prune starts): {points}")
    return lines + [""] + _answers(load("forged_answer.json"), provenance)


RECOVERY_VARIANTS = ("recovery_budget_keep.json", "recovery_budget_lr2e-4.json")


def _variants(main: dict, load: Callable) -> tuple[list[dict], list[str]]:
    """Forged rows of runs that changed one setting (e.g. --vocab keep), labelled by what changed."""
    rows, sources = [], []
    for name in RECOVERY_VARIANTS:
        v = load(name)
        if v is None:
            continue
        sources.append(name)
        diff = {k: x for k, x in v["settings"].items()
                if main["settings"].get(k) != x and k not in ("kd_only", "in_run_control")}
        label = ", ".join(f"--{k.replace('_', '-')} {x}" for k, x in diff.items())
        rows += [{**x, "row": f"{x['row']} ({label})"} for x in v["rows"] if x["row"].startswith("forged")]
    return rows, sources


def _answers(r: dict | None, provenance: Callable) -> list[str]:
    """The demo's question, answered greedily in our MLX runtime (bench/forged_answer.py)."""
    if r is None:
        return []
    lines = [f"The demo's question (`{r['prompt']}`), {r['tokens']} greedy tokens in {r['runtime']}:", ""]
    lines += provenance(r, "forged_answer.py", "forged_answer.json")
    for x in r["rows"]:
        verdict = "code" if x["is_code"] else "NOT code"
        if x["repeated_line"]:
            verdict += f", repeats `{x['repeated_line']}`"
        lines += [f"{x['model']} ({verdict}):", "", "````text", x["text"].strip(), "````", ""]  # the answer has its own fences
    return lines
