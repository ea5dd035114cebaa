"""Block-local distillation: normalised MSE vs cosine on SmolLM2-135M pruned one-shot (code domain).

Teacher = the base model; student = the base pruned in one step to --target-params (taylor, layer
balance, least-squares refit: block-local's zero-step case); then --steps block-local steps per
block with each loss and learning rate; every variant scored on the same held-out documents
(bits per byte and PPL). A short check to pick the default loss, not a recovery benchmark
(bench/recovery_budget.py is). Results: bench/results/blocklocal_loss.json.

    python bench/blocklocal_loss.py [--steps 16] [--lrs 1e-4,5e-4]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-params", type=float, default=0.75)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--lrs", default="1e-4,5e-4")
    ap.add_argument("--losses", default="nmse,cosine")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--eval-tokens", type=int, default=2048)
    ap.add_argument("--calib-windows", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS / "blocklocal_loss.json")
    args = ap.parse_args()

    from forge_cuda.checkpoint import load_model, load_tokenizer, param_count
    from forge_cuda.data import build_splits
    from forge_cuda.evaluate import perplexity, token_byte_lengths
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.pruning.options import PruneOptions
    from forge_cuda.pruning.step import prune_once
    from forge_cuda.recovery.blocklocal import BlockLocalConfig, train_blocks
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    src = resolve_model("smollm2-135m")
    tokenizer, T, B = load_tokenizer(src), args.seq_len, args.batch_size
    splits = build_splits("code", tokenizer, T, max_tokens={"train": args.steps * B * T, "eval": args.eval_tokens,
                                                            "calibration": args.calib_windows * T})
    table = token_byte_lengths(tokenizer)
    result = {**run_facts(), "model": "smollm2-135m (fp32, torch CPU)", "domain": "code",
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "data": splits.stats, "rows": []}

    def row(name, model, **extra):
        ev = perplexity(model, splits.eval, batch_size=4, progress=False, token_bytes=table)
        result["rows"].append({"row": name, "bpb": ev["bpb"], "ppl": ev["ppl"], "tokens": ev["tokens"],
                               "params": param_count(model), **extra})
        write_json(args.out, result)
        print(f"{name}: {ev['bpb']:.4f} bits/byte, PPL {ev['ppl']:.2f}", flush=True)

    teacher = load_model(src)
    for p in teacher.parameters():
        p.requires_grad_(False)
    row("base (teacher)", teacher)
    pruned = copy.deepcopy(teacher)
    tic = time.perf_counter()
    prune_once(pruned, splits.calibration, 0.0, PruneOptions(criterion="taylor", target_params=args.target_params),
               seed=1, progress=False, cycle_progress=1.0,
               base={"params": param_count(teacher), "channels": sum(model_layout(teacher).mlp_widths)})
    row("pruned + refit (0 steps)", pruned, seconds=time.perf_counter() - tic)
    with tempfile.TemporaryDirectory() as tmp:
        for loss in args.losses.split(","):
            for lr in (float(x) for x in args.lrs.split(",")):
                student = copy.deepcopy(pruned)
                cfg = BlockLocalConfig(steps=args.steps, batch_size=B, lr=lr, loss=loss, warmup_steps=2)
                stats = train_blocks(student, teacher, splits.train, cfg, Path(tmp) / "states", progress=False)
                row(f"block-local {loss} lr {lr:g}", student, loss=loss, lr=lr, steps=args.steps,
                    train_tokens=stats["tokens"], seconds=stats["seconds"],
                    block_losses=[(b["first_loss"], b["last_loss"]) for b in stats["blocks"]])
                del student
    result["complete"] = True
    write_json(args.out, result)


if __name__ == "__main__":
    main()
