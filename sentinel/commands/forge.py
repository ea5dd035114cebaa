"""``sentinel forge``: domain LoRA + head pruning cycles with baseline, control and forged rows."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.errors import SentinelError


def parse_fraction(value: str) -> float:
    """Accept '2%' or '0.02'."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SentinelError(f"{value!r} is not a fraction (use e.g. 2% or 0.02)") from None
    if not 0 <= number < 10:
        raise SentinelError(f"{value!r} is out of range")
    return number


@click.command("forge")
@click.argument("model")
@click.option("--domain", default="code", show_default=True,
              help="code | docs | a .txt/.jsonl file | a folder | a datasets name (online).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: ./forged/<model>-<domain>].")
@click.option("--prune-level", type=float, default=0.33, show_default=True,
              help="Fraction of query heads removed by the last cycle.")
@click.option("--cycles", type=int, default=2, show_default=True)
@click.option("--max-ppl-increase", default=None,
              help="Budget mode, e.g. 2%: stop once forged PPL exceeds control PPL by more; keep the last that met it.")
@click.option("--criterion", default="taylor", show_default=True,
              type=click.Choice(["taylor", "activation", "entropy", "magnitude", "random"]))
@click.option("--mode", default="auto", show_default=True, type=click.Choice(["query", "group", "auto"]))
@click.option("--min-heads", type=int, default=1, show_default=True, help="Query heads kept per layer at least.")
@click.option("--mitosis-rounds", type=int, default=0, show_default=True,
              help="After each prune, clone the best head of every kept KV group this many times (capacity allowing).")
@click.option("--steps", type=int, default=100, show_default=True, help="LoRA steps per stage.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--lora-rank", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--lora-dropout", type=float, default=0.05, show_default=True)
@click.option("--target-modules", default="all-linear", show_default=True,
              help="Comma-separated module names, or all-linear.")
@click.option("--gradient-checkpointing", is_flag=True)
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "bf16", "fp16", "fp32"]))
@click.option("--seq-len", type=int, default=256, show_default=True)
@click.option("--train-tokens", type=int, default=400_000, show_default=True)
@click.option("--eval-tokens", type=int, default=16_384, show_default=True)
@click.option("--calib-windows", type=int, default=16, show_default=True)
@click.option("--no-control", is_flag=True, help="Skip the LoRA-only control run (not recommended).")
@click.option("--tier", default="auto", show_default=True, type=click.Choice(["auto", "full", "nf4"]))
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed cycle.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def forge_cmd(model, domain, out, prune_level, cycles, max_ppl_increase, criterion, mode, min_heads, mitosis_rounds,
              steps, batch_size, grad_accum, lr, lora_rank, lora_alpha, lora_dropout, target_modules,
              gradient_checkpointing, precision, seq_len, train_tokens, eval_tokens, calib_windows, no_control,
              tier, device, seed, resume, force):
    """Train domain LoRA, prune attention heads in cycles, and report baseline vs control vs forged."""
    from forge_cuda.forge import ForgeConfig, ForgeRun
    from forge_cuda.pruning_step import PruneSettings
    from forge_cuda.train import TrainConfig

    if not 0 <= prune_level < 1:
        raise SentinelError("--prune-level must be in [0, 1)")
    if cycles < 1 or steps < 1:
        raise SentinelError("--cycles and --steps must be at least 1")
    modules = target_modules if target_modules == "all-linear" else [m.strip() for m in target_modules.split(",")]
    cfg = ForgeConfig(
        model=model, domain=domain, prune_level=prune_level, cycles=cycles,
        max_ppl_increase=parse_fraction(max_ppl_increase) if max_ppl_increase else None,
        prune=PruneSettings(criterion=criterion, mode=mode, min_heads=min_heads, mitosis_rounds=mitosis_rounds),
        train=TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          warmup_steps=max(1, steps // 10), lora_rank=lora_rank, lora_alpha=lora_alpha,
                          lora_dropout=lora_dropout, target_modules=modules,
                          gradient_checkpointing=gradient_checkpointing, precision=precision, seed=seed),
        seq_len=seq_len, train_tokens=train_tokens, eval_tokens=eval_tokens, calib_windows=calib_windows,
        control=not no_control, tier=tier, device=device, seed=seed)
    out = out or Path("forged") / f"{Path(model).name}-{Path(domain).name}"
    report = ForgeRun(cfg, out, resume=resume, force=force).run()
    if not report:  # a non-main process of a multi-GPU run: the main one reports
        return
    for row in report["rows"]:
        click.echo(f"{row['row']:>18}: PPL {row['ppl']:.3f}  params {row['params']:,}  "
                   f"KV bytes/token {row['kv_bytes_per_token_fp16']:,}")
    click.echo(f"forged model: {out / 'model'}")
    click.echo(f"report:       {out / 'report.md'}")


COMMANDS = [forge_cmd]
