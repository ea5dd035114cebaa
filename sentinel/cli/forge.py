"""``sentinel forge``: domain training + pruning/recovery cycles with baseline, control and forged rows."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from sentinel.cli.pruning_options import data_options, option_group, pruning_options
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


_MITOSIS = click.option("--mitosis-rounds", type=click.IntRange(min=0), default=0, show_default=True,
                 help="After each prune, clone the best head of every kept KV group this many times (explicit levels).")


_SCHEDULE = [
    click.option("--cycles", type=click.IntRange(min=1), default=None,
                 help="Prune/recover cycles [default: enough that no cycle removes more than --max-step-params; "
                      "2 with explicit levels]."),
    click.option("--max-step-params", type=click.FloatRange(0, 1, min_open=True), default=0.10, show_default=True,
                 help="Largest fraction of the base parameters one cycle removes in heads and MLP channels "
                      "(sets the default --cycles; free vocabulary rows do not count)."),
    click.option("--recovery", type=click.Choice(["distill", "lora"]), default="distill", show_default=True,
                 help="distill: match the unpruned domain-tuned teacher's logits (KL); lora: LoRA on labels."),
    click.option("--max-ppl-increase", default=None,
                 help="Budget mode, e.g. 2%: stop once forged PPL exceeds control PPL by more; "
                      "keep the last that met it."),
    click.option("--no-control", is_flag=True, help="Skip the control run (not recommended)."),
    click.option("--budget", default=None,
                 help="Recovery budget instead of --steps per cycle: wall time (45m, 1.5h) or tokens (200k, 1.5M), "
                      "split evenly over the cycles, --blocklocal-share of each to block-local distillation, the "
                      "rest to KD; the control trains as many tokens. Stage 0 keeps --steps."),
    click.option("--blocklocal-share", type=click.FloatRange(0, 1), default=0.0,
                 help="Share of each cycle's --budget for block-local distillation before KD [default 0: the refit, "
                      "then KD only, which beat a 0.25 share at equal wall time in docs/BENCHMARKS.md (l)]."),
    click.option("--distill-lr", type=click.FloatRange(0, min_open=True), default=None,
                 help="Peak learning rate of the forged track's distillation alone [default: --lr, else the recipe's "
                      "rate]; stage 0 and the control keep theirs."),
]


_TRAIN = [
    click.option("--train", "trainable", type=click.Choice(["auto", "full", "lora"]), default="auto",
                 show_default=True,
                 help="Trainable parameters for stage 0, control and distillation (auto: full unless --tier nf4)."),
    click.option("--distill-temperature", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
                 help="Softmax temperature of the distillation KL."),
    click.option("--distill-alpha", type=click.FloatRange(0, 1), default=1.0, show_default=True,
                 help="Weight of the KL term; 1 - alpha goes to the label loss."),
    click.option("--distill-top-k", type=click.IntRange(min=1), default=None,
                 help="Match only the teacher's top-k tokens (renormalised) instead of the full vocabulary."),
    click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
                 help="Training steps per stage."),
    click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Windows per step."),
    click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Batches accumulated per optimizer step."),
    click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
                 help="Peak learning rate [default: full-parameter KD 2e-4, full on labels (stage 0, control) "
                      "1e-4, LoRA 2e-4]."),
    click.option("--lora-rank", type=click.IntRange(min=1), default=16, show_default=True, help="LoRA rank r."),
    click.option("--lora-alpha", type=click.IntRange(min=1), default=32, show_default=True, help="LoRA scaling alpha."),
    click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
                 help="Dropout on the LoRA path."),
    click.option("--target-modules", default="all-linear", show_default=True,
                 help="LoRA target modules: comma-separated names, or all-linear."),
    click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward to save memory."),
    click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
                 help="Autocast dtype on CUDA (auto: bf16 where supported); always fp32 on CPU."),
]


_RUN = [
    click.option("--train-tokens", type=click.IntRange(min=1), default=400_000, show_default=True,
                 help="Training tokens drawn from the train split."),
    click.option("--eval-tokens", type=click.IntRange(min=64), default=16_384, show_default=True,
                 help="Held-out tokens every row is evaluated on."),
    click.option("--tier", default="auto", show_default=True, type=click.Choice(["auto", "full", "nf4"]),
                 help="Memory tier: full precision, or an NF4 base via bitsandbytes (CUDA only)."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
]


@dataclass(frozen=True)
class TrainFlags:
    trainable: str
    distill_temperature: float
    distill_alpha: float
    distill_top_k: int | None
    steps: int
    batch_size: int
    grad_accum: int
    lr: float | None
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    target_modules: str
    gradient_checkpointing: bool
    precision: str

    @property
    def modules(self) -> str | list[str]:
        if self.target_modules == "all-linear":
            return self.target_modules
        return [m.strip() for m in self.target_modules.split(",")]

    def config(self, seed: int, tier: str, recovery: str):
        """The TrainConfig these flags ask for (auto trainable: LoRA on an NF4 base or for LoRA recovery)."""
        from forge_cuda.train import TrainConfig

        trainable = ("lora" if tier == "nf4" else "full") if self.trainable == "auto" else self.trainable
        if recovery == "lora":
            trainable = "lora"
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, grad_accum=self.grad_accum,
                           lr=self.lr,  # None: forge_cuda.recovery.recipe per track
                           warmup_steps=max(1, self.steps // 10), lora_rank=self.lora_rank,
                           lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout, target_modules=self.modules,
                           gradient_checkpointing=self.gradient_checkpointing, precision=self.precision, seed=seed,
                           trainable=trainable, distill_temperature=self.distill_temperature,
                           distill_alpha=self.distill_alpha, distill_top_k=self.distill_top_k)


def _preflight(source: Path, options, modules) -> None:
    """Everything about the request that the model's config can tell, before ForgeRun creates anything."""
    from forge_cuda.families import supported_model_types
    from forge_cuda.pruning.preflight import check_reachable, check_target_modules, model_skeleton
    from sentinel.validate import check_model_folder

    check_model_folder(source, supported_model_types())
    skeleton = model_skeleton(source)
    check_reachable(skeleton, options)
    check_target_modules(skeleton, modules)


@click.command("forge")
@click.argument("model")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: ./forged/<model>-<domain>].")
@pruning_options(_MITOSIS)
@data_options
@option_group("schedule", _SCHEDULE, dict)
@option_group("train", _TRAIN, TrainFlags)
@option_group("run", _RUN, dict)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed cycle.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@vision_option
def forge_cmd(model, out, pruning, data, schedule, train, run, resume, force):
    """Domain-train MODEL, prune heads and MLP channels in cycles, recover, and report baseline vs control vs forged."""
    from forge_cuda.forge import ForgeConfig, ForgeRun
    from forge_cuda.pruning.options import finite
    from sentinel.cli.resolve import resolve_model
    from sentinel.weights import header_param_count

    resolved = functools.cache(lambda: resolve_model(model))  # once, and only after the flags were checked
    options = pruning.options(lambda: header_param_count(resolved()), seed=data.seed)
    finite(schedule["max_step_params"], "--max-step-params")
    increase = schedule["max_ppl_increase"]
    _preflight(resolved(), options, train.modules)
    cfg = ForgeConfig(
        model=model, domain=data.domain, prune_level=options.level, cycles=schedule["cycles"],
        max_step_params=schedule["max_step_params"], recovery=schedule["recovery"],
        max_ppl_increase=parse_fraction(increase) if increase else None, prune=options,
        train=train.config(data.seed, run["tier"], schedule["recovery"]), seq_len=data.seq_len,
        train_tokens=run["train_tokens"], eval_tokens=run["eval_tokens"], calib_windows=data.calib_windows,
        control=not schedule["no_control"], budget=schedule["budget"], blocklocal_share=schedule["blocklocal_share"],
        distill_lr=schedule["distill_lr"], tier=run["tier"], device=run["device"],
        seed=data.seed)
    out = out or Path("forged") / f"{Path(model).name}-{Path(data.domain).name}"
    report = ForgeRun(cfg, out, resume=resume, force=force, source=resolved()).run()
    if not report:  # a non-main process of a multi-GPU run: the main one reports
        return
    for row in report["rows"]:
        click.echo(f"{row['row']:>18}: {row['bpb']:.4f} bits/byte  PPL {row['ppl']:.3f}  params {row['params']:,}  "
                   f"KV bytes/token {row['kv_bytes_per_token_fp16']:,}")
    click.echo(f"forged model: {out / 'model'}")
    click.echo(f"report:       {out / 'report.md'}")


COMMANDS = [forge_cmd]
