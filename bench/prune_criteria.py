"""Head-importance criteria x prune levels on SmolLM2-135M, code domain: one-shot and after recovery.

Every row is measured on the same held-out eval windows (documents never used
for calibration or training, split by document). One-shot: score heads on the
calibration split, prune to the level (GQA-aware selection + defrag, the
forge's own `prune_once`), evaluate. Recovery: the best two criteria at one
level get the same LoRA steps as the LoRA-only control (same windows, seed).
Small settings so it finishes on 2 CPU cores; they are recorded in the JSON.
Results are written after every row, so a partial run still leaves numbers, and
``--resume`` continues it (same settings) without redoing finished rows.

    python bench/prune_criteria.py [--levels 0.25,0.5] [--eval-tokens 4096] [--steps 30] [--resume]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criteria", default="taylor,activation,entropy,magnitude,random")
    ap.add_argument("--levels", default="0.25,0.5")
    ap.add_argument("--recovery-level", type=float, default=0.5)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--calib-windows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", type=Path, default=RESULTS / "prune_criteria.json")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out (same settings)")
    args = ap.parse_args()

    import torch

    from forge_cuda.checkpoint import load_model, load_tokenizer, param_count
    from forge_cuda.data import build_splits
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.evaluate import perplexity
    from forge_cuda.pruning.options import PruneOptions
    from forge_cuda.pruning.step import prune_once
    from forge_cuda.train import TrainConfig, train_model
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    criteria, levels = args.criteria.split(","), [float(x) for x in args.levels.split(",")]
    src = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(src)
    base = load_model(src, device="cpu")
    T = args.seq_len
    splits = build_splits("code", tokenizer, seq_len=T, max_tokens={
        "train": args.steps * args.batch_size * T, "calibration": args.calib_windows * T, "eval": args.eval_tokens})
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, warmup_steps=max(1, args.steps // 10))
    settings = {k: getattr(args, k) for k in ("seq_len", "eval_tokens", "calib_windows", "steps", "batch_size",
                                              "recovery_level")}
    result = {**run_facts(), "model": "smollm2-135m (SmolLM2-135M-Instruct, fp32, torch CPU)", "domain": "code",
              "settings": {**settings, "lora": train_cfg.to_dict(), "selection_mode": "auto (GQA-aware)"},
              "data": splits.stats, "baseline": None, "control": None, "one_shot": [], "recovered": []}

    if args.resume and args.out.is_file():
        import json

        done = json.loads(args.out.read_text())
        if done.get("settings") != result["settings"]:
            raise SystemExit(f"{args.out} was written with other settings; rerun without --resume")
        for key in ("baseline", "control", "one_shot", "recovered"):
            result[key] = done[key]

    def row(model, **extra) -> dict:
        layout = model_layout(model)
        ev = perplexity(model, splits.eval, batch_size=4, progress=False)
        return {**extra, "ppl": ev["ppl"], "tokens": ev["tokens"], "params": param_count(model),
                "q_heads": sum(layout.q_counts), "kv_heads": sum(layout.kv_counts)}

    def save():
        write_json(args.out, result)

    if result["baseline"] is None:
        result["baseline"] = row(base, name="baseline")
        save()
    print(f"baseline ppl {result['baseline']['ppl']:.3f}", flush=True)
    for crit in criteria:
        for level in levels:
            if any(r["criterion"] == crit and r["level"] == level for r in result["one_shot"]):
                continue
            model = copy.deepcopy(base)
            tic = time.perf_counter()
            prune_once(model, splits.calibration, level, PruneOptions(criterion=crit), progress=False)
            result["one_shot"].append(row(model, criterion=crit, level=level,
                                          prune_seconds=time.perf_counter() - tic))
            save()
            print(f"{crit} @ {level}: ppl {result['one_shot'][-1]['ppl']:.3f}", flush=True)
            del model

    if result["control"] is None:
        control, stats = train_model(copy.deepcopy(base), splits.train, train_cfg, progress=False)
        result["control"] = row(control, name="LoRA-only control", train=stats)
        save()
        del control
    print(f"control ppl {result['control']['ppl']:.3f}", flush=True)
    at_level = sorted((r for r in result["one_shot"] if r["level"] == args.recovery_level), key=lambda r: r["ppl"])
    for best in at_level[:2]:
        if any(r["criterion"] == best["criterion"] for r in result["recovered"]):
            continue
        model = copy.deepcopy(base)
        prune_once(model, splits.calibration, args.recovery_level, PruneOptions(criterion=best["criterion"]),
                   progress=False)
        model, stats = train_model(model, splits.train, train_cfg, progress=False)
        result["recovered"].append(row(model, criterion=best["criterion"], level=args.recovery_level,
                                       one_shot_ppl=best["ppl"], train=stats))
        save()
        print(f"recovered {best['criterion']}: ppl {result['recovered'][-1]['ppl']:.3f}", flush=True)
    result["complete"] = True
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
