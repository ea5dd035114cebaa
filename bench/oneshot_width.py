"""One-shot pruning of SmolLM2-135M to a size target: criterion x least-squares refit, no training.

Every row starts from the base model, prunes to ``--target`` of its parameters in one
step (``prune_model``: scores on the calibration split, one selection over heads and
MLP channels, optional refit of o_proj/down_proj, defrag) and is evaluated on the same
held-out windows as bench/width_distill.py. This is what decides the forge's defaults:
the better one-shot model is the better start for recovery.

    python bench/oneshot_width.py [--target 0.75] [--criteria activation,taylor] [--resume]
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
    ap.add_argument("--target", type=float, default=0.75)
    ap.add_argument("--criteria", default="taylor,activation")
    ap.add_argument("--balances", default="kind,layer")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--calib-windows", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "oneshot_width.json")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    from forge_cuda.checkpoint import load_model, load_tokenizer, param_count
    from forge_cuda.data import build_splits
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.evaluate import perplexity
    from forge_cuda.pruning.options import PruneOptions
    from forge_cuda.pruning.step import prune_model
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    settings = {k: getattr(args, k) for k in ("target", "criteria", "balances", "seq_len", "eval_tokens",
                                              "calib_windows")}
    result = {**run_facts(), "model": "smollm2-135m (fp32, torch CPU)", "domain": "code", "settings": settings,
              "rows": []}
    if args.resume and args.out.is_file():
        done = json.loads(args.out.read_text())
        if done.get("settings") == settings:
            result["rows"] = done["rows"]
    src = resolve_model("smollm2-135m")
    T = args.seq_len
    splits = build_splits("code", load_tokenizer(src), seq_len=T, max_tokens={
        "train": 200_000, "calibration": args.calib_windows * T, "eval": args.eval_tokens})
    result["data"] = splits.stats
    base = load_model(src)
    batches = list(splits.calibration.split(4))

    def add(name: str, model, seconds: float, **extra) -> None:
        layout = model_layout(model)
        ppl = perplexity(model, splits.eval, batch_size=4, progress=False)["ppl"]
        result["rows"] = [r for r in result["rows"] if r["row"] != name] + [{
            "row": name, **extra, "ppl": ppl, "params": param_count(model), "q_heads": sum(layout.q_counts),
            "kv_heads": sum(layout.kv_counts), "mlp_channels": sum(layout.mlp_widths), "seconds": seconds}]
        write_json(args.out, result)
        print(f"{name}: ppl {ppl:.3f} params {param_count(model):,} ({seconds:.0f} s)", flush=True)

    done = {r["row"] for r in result["rows"]}
    if "baseline" not in done:
        add("baseline", base, 0.0)
    combos = [(c, b, r) for c in args.criteria.split(",") for b in args.balances.split(",") for r in (False, True)]
    for criterion, balance, refit in combos:
        name = f"{criterion}, balance {balance}{' + refit' if refit else ''}"
        if name in done:
            continue
        model, tic = copy.deepcopy(base), time.perf_counter()
        prune_model(model, batches, PruneOptions(criterion=criterion, target_params=args.target, balance=balance,
                                                 normalize="none", refit=refit), progress=False)
        add(name, model, time.perf_counter() - tic, criterion=criterion, balance=balance, refit=refit)
        del model
    result["complete"] = True
    write_json(args.out, result)


if __name__ == "__main__":
    main()
