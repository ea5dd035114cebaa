"""Width pruning toward a size target, recovered by distillation vs LoRA, on SmolLM2-135M (code domain).

The forge's own pieces, orchestrated so that stage 0 and the control are shared by
every row: baseline (base model) -> stage 0 (domain training, full parameters, labels)
= the teacher -> control (teacher + the same steps, labels, no pruning). Each forged
row starts from the teacher and takes ceil((1 - target) / 0.1) cycles of
``prune_once`` (taylor scores on the calibration split, one selection over
heads and MLP channels, least-squares refit) + recovery, splitting the same total steps as the control
over its cycles: ``distill`` = full-parameter KL to the teacher, ``lora`` = LoRA on
labels (the original forge). Every row is evaluated on the same held-out windows
(documents never used for training or calibration). Results are written after every
row; ``--resume`` continues (same settings). Forged checkpoints are kept under
$SENTINEL_HOME/bench/width_distill/ for bench/quant_vs_prune.py.

    python bench/width_distill.py [--targets 0.75,0.9,0.6] [--steps 24] [--resume]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="0.75,0.9,0.6", help="fractions of the base parameters to keep, in run order")
    ap.add_argument("--recoveries", default="distill,lora")
    ap.add_argument("--one-step", default="0.75:distill",
                    help="target:recovery rows also run as ONE prune + one recovery of all the steps (vs gradual)")
    ap.add_argument("--criterion", default="taylor")
    ap.add_argument("--balance", default="layer")
    ap.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=24, help="training steps of stage 0, of the control and of each row")
    ap.add_argument("--lr-stage0", type=float, default=1e-4)
    ap.add_argument("--lr-full", type=float, default=5e-5, help="full-parameter lr of the control and of distillation")
    ap.add_argument("--lr-lora", type=float, default=2e-4)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--train-tokens", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=RESULTS / "width_distill.json")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    import math

    from forge_cuda.checkpoint import load_model, load_tokenizer, param_count, save_model
    from forge_cuda.data import build_splits
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.evaluate import perplexity
    from forge_cuda.pruning.options import PruneOptions
    from forge_cuda.pruning.step import default_cycles, prune_once
    from forge_cuda.train import TrainConfig, train_model
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model
    from sentinel.paths import cache_root

    keep_dir = cache_root() / "bench" / "width_distill"
    settings = {"windows": "stage 0 and recovery disjoint; control = union of the forged cycles' chunks"}
    settings |= {k: getattr(args, k) for k in ("criterion", "balance", "refit", "seq_len", "batch_size", "steps",
                                              "lr_stage0", "lr_full", "lr_lora", "eval_tokens", "calib_windows",
                                              "train_tokens")}
    result = {**run_facts(), "model": "smollm2-135m (SmolLM2-135M-Instruct, fp32, torch CPU)", "domain": "code",
              "settings": settings, "rows": []}
    if args.resume and args.out.is_file():
        done = json.loads(args.out.read_text())
        if done.get("settings") != settings:
            raise SystemExit(f"{args.out} was written with other settings; rerun without --resume")
        result["rows"] = done["rows"]

    src = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(src)
    T = args.seq_len
    splits = build_splits("code", tokenizer, seq_len=T, max_tokens={
        "train": args.train_tokens, "calibration": args.calib_windows * T, "eval": args.eval_tokens})
    result["data"] = splits.stats

    def cfg(trainable: str, steps: int, lr: float | None = None) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=args.batch_size, warmup_steps=max(1, steps // 10), seed=0,
                           trainable=trainable, lr=lr or (args.lr_full if trainable == "full" else args.lr_lora),
                           lora_dropout=0.0)

    def row(model, name: str, **extra) -> dict:
        layout = model_layout(model)
        ev = perplexity(model, splits.eval, batch_size=4, progress=False)
        out = {"row": name, **extra, "ppl": ev["ppl"], "eval_tokens": ev["tokens"], "params": param_count(model),
               "bytes_fp16": 2 * param_count(model), "q_heads": sum(layout.q_counts),
               "kv_heads": sum(layout.kv_counts), "mlp_channels": sum(layout.mlp_widths)}
        result["rows"] = [r for r in result["rows"] if r["row"] != name] + [out]
        write_json(args.out, result)
        print(f"{name}: ppl {out['ppl']:.3f}, params {out['params']:,}, "
              f"{extra.get('seconds', 0):.0f} s", flush=True)
        return out

    # Stage 0 and the recovery phase see disjoint windows (re-reading stage 0's windows overfits them);
    # the control and every forged row see the same recovery windows, each cycle its own consecutive chunk.
    B, S = args.batch_size, args.steps
    if len(splits.train) < 2 * S * B:
        raise SystemExit(f"need {2 * S * B} training windows, the split has {len(splits.train)}")
    stage0_windows, recovery_windows = splits.train[:S * B], splits.train[S * B:2 * S * B]
    have = {r["row"] for r in result["rows"]}
    base = load_model(src)
    base_params = param_count(base)
    base_channels = sum(model_layout(base).mlp_widths)
    if "baseline" not in have:
        row(base, "baseline", train_tokens=0, seconds=0.0)
    teacher_dir = keep_dir / f"teacher-{args.steps}x{args.batch_size}x{T}-lr{args.lr_stage0:g}"
    if "stage 0 (teacher)" not in have or not (teacher_dir / "config.json").is_file():
        tic = time.perf_counter()
        teacher, stats = train_model(base, stage0_windows, cfg("full", args.steps, args.lr_stage0), progress=True,
                                     desc="stage 0")
        save_model(teacher, teacher_dir, tokenizer, force=True)
        row(teacher, "stage 0 (teacher)", train_tokens=stats["tokens"], seconds=time.perf_counter() - tic)
    teacher = load_model(teacher_dir)
    for p in teacher.parameters():
        p.requires_grad_(False)

    if "unpruned control" not in have:
        tic = time.perf_counter()
        control, stats = train_model(copy.deepcopy(teacher), recovery_windows, cfg("full", args.steps),
                                     progress=True, desc="control")
        row(control, "unpruned control", train_tokens=stats["tokens"], seconds=time.perf_counter() - tic,
            trainable="full", loss="labels")
        del control

    plan = [(float(t), r, False) for t in args.targets.split(",") for r in args.recoveries.split(",")]
    extra = [(float(x.split(":")[0]), x.split(":")[1], True) for x in args.one_step.split(",") if x]
    plan = plan[:2] + extra + plan[2:]  # the one-step comparison right after the 0.75 pair
    for target, recovery, one_step in plan:
        name = f"forged {target:g} {recovery}" + (" one-step" if one_step else "")
        if name in have:
            continue
        cycles = 1 if one_step else default_cycles(target)
        per_cycle = [args.steps // cycles + (1 if c < args.steps % cycles else 0) for c in range(cycles)]
        starts = [sum(per_cycle[:c]) * B for c in range(cycles + 1)]
        model, tic, tokens, one_shot = copy.deepcopy(teacher), time.perf_counter(), 0, []
        settings_p = PruneOptions(criterion=args.criterion, target_params=target, batch_size=4,
                                   balance=args.balance, refit=args.refit)
        for c in range(1, cycles + 1):
            prune_once(model, splits.calibration, 0.0, settings_p, seed=c, progress=False,
                       cycle_progress=c / cycles, base={"params": base_params, "channels": base_channels})
            if c == cycles:
                one_shot.append(perplexity(model, splits.eval, batch_size=4, progress=False)["ppl"])
            trainable = "full" if recovery == "distill" else "lora"
            chunk = recovery_windows[starts[c - 1]:starts[c]]
            model, stats = train_model(model, chunk, cfg(trainable, per_cycle[c - 1]), progress=True,
                                       desc=f"{name} c{c}", teacher=teacher if recovery == "distill" else None)
            tokens += stats["tokens"]
        save_model(model, keep_dir / name.replace(" ", "_"), tokenizer, force=True)
        row(model, name, target=target, recovery=recovery, cycles=cycles, steps_per_cycle=per_cycle,
            train_tokens=tokens, seconds=time.perf_counter() - tic, ppl_before_last_recovery=one_shot[-1],
            params_goal=round(target * base_params), shape={"q_heads": model_layout(model).q_counts,
                                                            "kv_heads": model_layout(model).kv_counts,
                                                            "mlp_channels": model_layout(model).mlp_widths})
        del model
    result["complete"] = True
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
