"""Recovery at a real budget: block-local + KD vs KD alone at equal wall time, with curves (SmolLM2-135M, code).

Rows: baseline (untuned base), stage 0 (the teacher: --stage0-steps full-parameter steps on labels),
control at equal wall time (the teacher trained on labels for --budget), and two forges to
--target-params, each given the same --budget of recovery: "forged KD only" (block-local share 0)
and "forged block-local + KD" (share --blocklocal-share). Each forge is `sentinel forge`'s own
ForgeRun (so the bench measures the product); with --in-run-control each also trains its own
control (the same recovery tokens on labels), reported beside it. Every row is scored on the same held-out documents: bits per
byte and PPL, plus an out-of-domain (docs) row; curves (bpb against recovery tokens) come from
the forge reports. Resumable: finished forges are read back from their report.json, an
interrupted one continues with ForgeRun's --resume; results go to bench/results/recovery_budget.json
after every row.

    python bench/recovery_budget.py [--budget 45m] [--target-params 0.75] [--resume]
    python bench/recovery_budget.py --vocab keep --kd-only --out bench/results/recovery_budget_keep.json
    python bench/recovery_budget.py --model <tiny folder> --budget 2k ...   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name or folder")
    ap.add_argument("--budget", default="45m", help="recovery budget of each row (wall time or tokens)")
    ap.add_argument("--target-params", type=float, default=0.75)
    ap.add_argument("--vocab", default="domain", help="token rows kept (keep | domain | a coverage)")
    ap.add_argument("--blocklocal-share", type=float, default=0.25)
    ap.add_argument("--kd-lr", type=float, default=None, help="KD peak learning rate [default: the recipe's]")
    ap.add_argument("--blocklocal-loss", default="nmse", choices=["nmse", "cosine"])
    ap.add_argument("--stage0-steps", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--train-tokens", type=int, default=2_000_000)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--curve-points", type=int, default=6, help="curve evaluations per recovery phase")
    ap.add_argument("--curve-eval-tokens", type=int, default=4096)
    ap.add_argument("--kd-only", action="store_true",
                    help="only the KD-only forge (no block-local row, no equal-wall-time control): e.g. the same "
                         "forge with --vocab keep, written to its own --out")
    ap.add_argument("--in-run-control", action="store_true",
                    help="also train each forge's own control (same tokens on labels); the equal-wall-time "
                         "control row is always trained")
    ap.add_argument("--work", type=Path, default=None, help="forge outputs [default: $SENTINEL_HOME/bench/<--out name>]")
    ap.add_argument("--out", type=Path, default=RESULTS / "recovery_budget.json")
    ap.add_argument("--resume", action="store_true")
    return ap.parse_args()


def _config(args, source: Path, share: float):
    from forge_cuda.forge import ForgeConfig
    from forge_cuda.pruning.options import PruneOptions
    from forge_cuda.recovery.blocklocal import BlockLocalConfig
    from forge_cuda.train import TrainConfig

    return ForgeConfig(model=str(source), domain="code", prune_level=0.0,
                       prune=PruneOptions(criterion="taylor", target_params=args.target_params, vocab=args.vocab),
                       train=TrainConfig(steps=args.stage0_steps, batch_size=args.batch_size, trainable="full",
                                         warmup_steps=max(1, args.stage0_steps // 10)),
                       blocklocal=BlockLocalConfig(loss=args.blocklocal_loss), blocklocal_share=share,
                       distill_lr=args.kd_lr,
                       budget=args.budget, seq_len=args.seq_len, train_tokens=args.train_tokens,
                       eval_tokens=args.eval_tokens, calib_windows=args.calib_windows,
                       curve_points=args.curve_points, curve_eval_tokens=args.curve_eval_tokens, keep_teacher=True,
                       control=args.in_run_control)


def _forge(args, source: Path, folder: Path, share: float) -> dict:
    """One forge, or its report when it already finished (an interrupted one resumes)."""
    from forge_cuda.forge import ForgeRun

    if (folder / "report.json").is_file():
        return json.loads((folder / "report.json").read_text())
    partial = folder.with_name(folder.name + ".partial")
    resume = args.resume and (partial / "state.json").is_file()
    return ForgeRun(_config(args, source, share), folder, resume=resume, force=not resume).run()


def _row(name: str, ev: dict, **extra) -> dict:
    keys = ("bpb", "ppl", "tokens", "predicted_bytes", "params", "bytes_fp16")
    return {"row": name, **{k: ev.get(k) for k in keys}, **extra}


def _timed_control(args, teacher_dir: Path, report: dict, seconds: float) -> dict:
    """The teacher trained on labels for the same wall time as a forge's recovery, with its curve."""
    from forge_cuda.checkpoint import load_model, load_tokenizer
    from forge_cuda.data import build_splits
    from forge_cuda.evaluate import perplexity, token_byte_lengths
    from forge_cuda.train import TrainConfig, train_model

    tokenizer = load_tokenizer(teacher_dir)
    T = args.seq_len
    splits = build_splits("code", tokenizer, T, max_tokens={"train": args.train_tokens, "eval": args.eval_tokens,
                                                            "calibration": args.calib_windows * T})
    table = token_byte_lengths(tokenizer)
    curve_windows = splits.eval[:max(1, args.curve_eval_tokens // T)]
    marks, curve, start = [seconds * k / args.curve_points for k in range(1, args.curve_points + 1)], [], time.time()

    def on_step(info):
        if marks and time.time() - start >= marks[0]:
            marks.pop(0)
            ev = perplexity(info["model"], curve_windows, progress=False, token_bytes=table)
            curve.append({"tokens": info["step"] * args.batch_size * T, "bpb": ev["bpb"], "ppl": ev["ppl"]})

    cfg = TrainConfig(steps=10**9, batch_size=args.batch_size, trainable="full", warmup_steps=10, seed=1)
    model, stats = train_model(load_model(teacher_dir), splits.train, cfg, on_step=on_step, max_seconds=seconds,
                               desc="control (equal wall time)")
    ev = perplexity(model, splits.eval, progress=False, token_bytes=table)
    return _row("control (equal wall time)", ev, steps=stats["steps"], recovery_tokens=stats["steps"] *
                args.batch_size * T, seconds=stats["seconds"], curve=curve,
                params=report["rows"][0]["params"], bytes_fp16=report["rows"][0]["bytes_fp16"])


def _recovery_seconds(report: dict) -> float:
    return sum(c["blocklocal"]["seconds"] + c["train"]["seconds"] for c in report["cycles"][1:])


def main() -> None:
    args = _args()
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model
    from sentinel.paths import cache_root

    source = resolve_model(args.model)
    work = args.work or cache_root() / "bench" / args.out.stem  # recovery_budget for the default --out
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "resume", "work")}
    result = {**run_facts(), "model": args.model, "domain": "code", "settings": settings, "rows": []}
    if args.resume and args.out.is_file():
        done = json.loads(args.out.read_text())
        if done.get("settings") != settings:
            raise SystemExit(f"{args.out} was written with other settings; rerun without --resume")
        result = done
    elif work.exists():
        shutil.rmtree(work)
    have = {r["row"] for r in result["rows"]}

    def add(row: dict) -> None:
        result["rows"] = [r for r in result["rows"] if r["row"] != row["row"]] + [row]
        write_json(args.out, result)
        print(f"{row['row']}: {row['bpb']:.4f} bits/byte, PPL {row['ppl']:.3f}, params {row['params']:,}", flush=True)

    reports = {}
    forges = [("forged KD only", 0.0)] + ([] if args.kd_only else [("forged block-local + KD", args.blocklocal_share)])
    for name, share in forges:
        reports[name] = report = _forge(args, source, work / name.replace(" ", "_").replace("+", "and"), share)
        rows = {r["row"]: r for r in report["rows"]}
        if "baseline" not in have:
            add(_row("baseline", rows["baseline"], ood=report["ood_rows"][0] if report["ood_rows"] else None))
            add(_row("stage 0 (teacher)", report["cycles"][0]["forged"], steps=args.stage0_steps))
            have |= {"baseline", "stage 0 (teacher)"}
        curve = [p for c in report["cycles"][1:] for p in c["curve"]["forged"]]
        control_curve = [p for c in report["cycles"][1:] for p in c["curve"]["control"]]
        if "unpruned control" in rows:
            add(_row(f"{name}: control (same tokens)", rows["unpruned control"], curve=control_curve))
        add(_row(name, rows["forged"], recovery_seconds=_recovery_seconds(report), curve=curve,
                 recovery_tokens=curve[-1]["tokens"] if curve else 0, blocklocal_share=share,
                 ood=report["ood_rows"][1] if report["ood_rows"] else None,
                 seconds_total=report["seconds"].get("total_this_session")))
    if "control (equal wall time)" not in have and not args.kd_only:
        longest = max(_recovery_seconds(r) for r in reports.values())
        teacher = work / "forged_KD_only" / "teacher"
        add(_timed_control(args, teacher, reports["forged KD only"], longest))
    result["complete"] = True
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
