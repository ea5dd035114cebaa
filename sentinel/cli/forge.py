"""``sentinel forge``: domain training + pruning/recovery cycles with baseline, control and forged rows."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.cli.pruning_options import data_options, pruning_options, size_target
from sentinel.cli.vision import vision_option
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
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: ./forged/<model>-<domain>].")
@pruning_options
@data_options
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="Prune/recover cycles [default: enough that no cycle removes more than --max-step-params; "
                   "2 with explicit levels].")
@click.option("--max-step-params", type=click.FloatRange(0, 1, min_open=True), default=0.10, show_default=True,
              help="Largest fraction of the base parameters one cycle removes (sets the default --cycles).")
@click.option("--recovery", type=click.Choice(["distill", "lora"]), default="distill", show_default=True,
              help="distill: match the unpruned domain-tuned teacher's logits (KL); lora: LoRA on labels.")
@click.option("--train", "trainable", type=click.Choice(["auto", "full", "lora"]), default="auto", show_default=True,
              help="Trainable parameters for stage 0, control and distillation (auto: full unless --tier nf4).")
@click.option("--distill-temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Softmax temperature of the distillation KL.")
@click.option("--distill-alpha", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Weight of the KL term; 1 - alpha goes to the label loss.")
@click.option("--distill-top-k", type=click.IntRange(min=1), default=None,
              help="Match only the teacher's top-k tokens (renormalised) instead of the full vocabulary.")
@click.option("--max-ppl-increase", default=None,
              help="Budget mode, e.g. 2%: stop once forged PPL exceeds control PPL by more; keep the last that met it.")
@click.option("--mitosis-rounds", type=click.IntRange(min=0), default=0, show_default=True,
              help="After each prune, clone the best head of every kept KV group this many times (explicit levels).")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True, help="Training steps per stage.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Windows per step.")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches accumulated per optimizer step.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Peak learning rate [default: 2e-4 for LoRA, 5e-5 for full training].")
@click.option("--lora-rank", type=click.IntRange(min=1), default=16, show_default=True, help="LoRA rank r.")
@click.option("--lora-alpha", type=click.IntRange(min=1), default=32, show_default=True, help="LoRA scaling alpha.")
@click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Dropout on the LoRA path.")
@click.option("--target-modules", default="all-linear", show_default=True,
              help="LoRA target modules: comma-separated names, or all-linear.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward to save memory.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
              help="Autocast dtype on CUDA (auto: bf16 where supported); always fp32 on CPU.")
@click.option("--train-tokens", type=click.IntRange(min=1), default=400_000, show_default=True,
              help="Training tokens drawn from the train split.")
@click.option("--eval-tokens", type=click.IntRange(min=64), default=16_384, show_default=True,
              help="Held-out tokens every row is evaluated on.")
@click.option("--no-control", is_flag=True, help="Skip the control run (not recommended).")
@click.option("--tier", default="auto", show_default=True, type=click.Choice(["auto", "full", "nf4"]),
              help="Memory tier: full precision, or an NF4 base via bitsandbytes (CUDA only).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed cycle.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@vision_option
def forge_cmd(model, domain, out, target_params, target_bytes, prune_level, mlp_level, criterion, mode, min_heads,
              min_channels, channel_group, balance, refit, cycles, max_step_params, recovery, trainable, distill_temperature,
              distill_alpha, distill_top_k, max_ppl_increase, mitosis_rounds, steps, batch_size, grad_accum, lr,
              lora_rank, lora_alpha, lora_dropout, target_modules, gradient_checkpointing, precision, seq_len,
              train_tokens, eval_tokens, calib_windows, no_control, tier, device, seed, resume, force):
    """Domain-train MODEL, prune heads and MLP channels in cycles, recover, and report baseline vs control vs forged."""
    from forge_cuda.forge import ForgeConfig, ForgeRun
    from forge_cuda.pruning_step import PruneSettings
    from forge_cuda.train import TrainConfig
    from sentinel.cli.resolve import resolve_model

    source = resolve_model(model)
    size = size_target(source, target_params, target_bytes, prune_level, mlp_level)
    if trainable == "auto":
        trainable = "lora" if tier == "nf4" else "full"
    if recovery == "lora":
        trainable = "lora"
    modules = target_modules if target_modules == "all-linear" else [m.strip() for m in target_modules.split(",")]
    cfg = ForgeConfig(
        model=model, domain=domain, prune_level=size["level"], cycles=cycles, max_step_params=max_step_params,
        recovery=recovery, max_ppl_increase=parse_fraction(max_ppl_increase) if max_ppl_increase else None,
        prune=PruneSettings(criterion=criterion, mode=mode, min_heads=min_heads, mitosis_rounds=mitosis_rounds,
                            target_params=size["target_params"], mlp_level=size["mlp_level"],
                            min_channels=min_channels, channel_group=channel_group, refit=refit,
                            balance=balance),
        train=TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum,
                          lr=lr or (5e-5 if trainable == "full" else 2e-4),
                          warmup_steps=max(1, steps // 10), lora_rank=lora_rank, lora_alpha=lora_alpha,
                          lora_dropout=lora_dropout, target_modules=modules,
                          gradient_checkpointing=gradient_checkpointing, precision=precision, seed=seed,
                          trainable=trainable, distill_temperature=distill_temperature,
                          distill_alpha=distill_alpha, distill_top_k=distill_top_k),
        seq_len=seq_len, train_tokens=train_tokens, eval_tokens=eval_tokens, calib_windows=calib_windows,
        control=not no_control, tier=tier, device=device, seed=seed)
    out = out or Path("forged") / f"{Path(model).name}-{Path(domain).name}"
    report = ForgeRun(cfg, out, resume=resume, force=force, source=source).run()
    if not report:  # a non-main process of a multi-GPU run: the main one reports
        return
    for row in report["rows"]:
        click.echo(f"{row['row']:>18}: PPL {row['ppl']:.3f}  params {row['params']:,}  "
                   f"KV bytes/token {row['kv_bytes_per_token_fp16']:,}")
    click.echo(f"forged model: {out / 'model'}")
    click.echo(f"report:       {out / 'report.md'}")


COMMANDS = [forge_cmd]
