"""Training for every forge stage: LoRA (peft, merged afterwards) or all parameters, on labels or a teacher.

Mixed precision on CUDA, fp32 on CPU. Merging LoRA adapters back into the weights
before each pruning step is what lets defrag act on the weights the model actually
uses. With a ``teacher`` the loss is logit distillation (forge_cuda.distill); the
teacher runs without gradients, in the autocast dtype on a GPU.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from forge_cuda.distill import distill_loss
from sentinel.errors import SentinelError

TRAINABLE = ("lora", "full")


@dataclass
class TrainConfig:
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None: forge_cuda.recovery.recipe.default_lr(trainable, loss)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    seed: int = 0
    trainable: str = "lora"  # lora (adapters, merged afterwards) | full (every parameter)
    distill_temperature: float = 1.0
    distill_alpha: float = 1.0  # weight of the KL term; 1 - alpha goes to the label loss
    distill_top_k: int | None = None  # match only the teacher's top-k tokens (cache-sized teacher)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(requested: str, device: torch.device) -> str:
    """bf16 where the GPU supports it, else fp16 (with a grad scaler); always fp32 on CPU."""
    if device.type != "cuda":
        return "fp32"
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=cfg.target_modules)


def _enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant checkpointing (required with DDP); transformers 5 renamed it activation checkpointing."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _disable_checkpointing(model: nn.Module) -> None:
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def _batches(windows: torch.Tensor, batch_size: int, seed: int):
    """Endless epochs over the windows, reshuffled per epoch from the seed (reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(windows), generator=generator)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield windows[order[i:i + batch_size]]
        if len(order) < batch_size:
            yield windows[order]


def _wrap(model: nn.Module, cfg: TrainConfig, tier: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(module to train, the LoRA base or None): peft adapters, or the model itself with every weight trainable."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.trainable not in TRAINABLE:
        raise SentinelError(f"unknown trainable mode {cfg.trainable!r}; choose from {', '.join(TRAINABLE)}")
    if cfg.trainable == "full":
        if tier == "nf4":
            raise SentinelError("--train full updates every weight, which a 4-bit (nf4) base cannot hold; "
                                "use --train lora with --tier nf4")
        if cfg.gradient_checkpointing:
            _enable_checkpointing(model)
        for p in model.parameters():
            p.requires_grad_(True)
        return model, None
    base = model
    if tier == "nf4":
        from forge_cuda.nf4 import quantized_copy

        base = prepare_model_for_kbit_training(quantized_copy(model, device),
                                               use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        _enable_checkpointing(model)
        model.enable_input_require_grads()
    with warnings.catch_warnings():  # peft 0.x reads transformers 5's deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(base, lora_config(cfg)), base


def _time_schedule(optimizer, warmup: int, seconds: float):
    """Warmup over steps, then cosine over the wall clock (a wall-time budget knows seconds, not steps)."""
    start = time.perf_counter()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (time.perf_counter() - start) / seconds)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _teacher_logits(teacher: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher(input_ids=batch.to(next(teacher.parameters()).device)).logits.to(batch.device)


def _accumulate(ddp_model, batches, cfg: TrainConfig, accelerator, device, teacher, use_labels: bool
                ) -> tuple[float, int]:
    """One optimizer step's gradients over ``cfg.grad_accum`` batches: its loss and tokens trained on."""
    step_loss, tokens = 0.0, 0
    for _ in range(cfg.grad_accum):
        batch = next(batches).to(device)
        with accelerator.autocast():
            out = ddp_model(input_ids=batch, labels=batch if use_labels else None)
            loss = out.loss
            if teacher is not None:
                loss = distill_loss(out.logits, _teacher_logits(teacher, batch), cfg.distill_temperature,
                                    cfg.distill_alpha, out.loss, cfg.distill_top_k)
            loss = loss / cfg.grad_accum
        accelerator.backward(loss)
        step_loss += loss.item()
        tokens += batch[:, 1:].numel()
    return step_loss, tokens


def _prepare(peft_model, trainable: list, cfg: TrainConfig, lr: float, precision: str, device: torch.device,
             max_seconds: float | None):
    """Accelerator, wrapped model, AdamW and the schedule (warmup + cosine over steps, or over the clock).

    accelerate does autocast, the fp16 grad scaler and, under a launcher, DDP; we place devices ourselves.
    """
    from transformers import get_cosine_schedule_with_warmup

    accelerator = Accelerator(mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(precision, "no"),
                              cpu=device.type == "cpu", device_placement=False)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=cfg.weight_decay)
    ddp_model, optimizer = accelerator.prepare(peft_model, optimizer)
    schedule = _time_schedule(optimizer, cfg.warmup_steps, max_seconds) if max_seconds else \
        get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, max(cfg.steps, 1))
    return accelerator, ddp_model, optimizer, schedule


def _progress(step: int, steps: int, loss: float, tokens: int, elapsed: float, max_seconds: float | None,
              lr: float, model) -> dict:
    """What on_step and the bar see after ``step``: loss, speed, time left (on the clock or by steps)."""
    eta = max(0.0, max_seconds - elapsed) if max_seconds else elapsed / (step + 1) * (steps - step - 1)
    return {"step": step + 1, "steps": steps, "loss": loss, "tokens_per_s": tokens / elapsed, "eta_s": eta,
            "lr": lr, "tokens": tokens, "model": model}


def _unwrap(model: nn.Module, peft_model, cfg: TrainConfig, tier: str) -> nn.Module:
    """The plain trained model, frozen: itself (full), LoRA merged into it, or NF4 deltas merged into
    the real weights."""
    if cfg.trainable == "full":
        merged = model
    elif tier == "nf4":
        from forge_cuda.nf4 import merge_lora_into

        merge_lora_into(model, peft_model)
        merged = model
    else:
        merged = peft_model.merge_and_unload()
    if cfg.gradient_checkpointing:
        _disable_checkpointing(merged)
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    return merged


def train_model(model: nn.Module, windows: torch.Tensor, cfg: TrainConfig, desc: str = "train",
                on_step: Callable[[dict], None] | None = None, progress: bool = True,
                tier: str = "full", device: torch.device | None = None,
                teacher: nn.Module | None = None, max_seconds: float | None = None) -> tuple[nn.Module, dict]:
    """Train on [n, T] windows and return the plain model (LoRA merged) plus stats.

    ``teacher``: distil its logits (KL, ``cfg.distill_*``) instead of training on labels alone.
    ``max_seconds``: stop after this much wall time (``cfg.steps`` is then a cap), cosine over the clock.
    ``on_step`` gets each step's numbers and ``model`` (the module being trained, for curve points).
    ``tier="nf4"`` trains LoRA on a 4-bit copy on ``device`` and merges the deltas into
    ``model`` (the real weights), which may stay on the CPU.
    """
    from forge_cuda.recovery.recipe import default_lr

    lr = cfg.lr if cfg.lr is not None else default_lr(cfg.trainable, "labels" if teacher is None else "distill")
    torch.manual_seed(cfg.seed)
    device = device or next(model.parameters()).device
    precision = resolve_precision(cfg.precision, device)
    peft_model, base = _wrap(model, cfg, tier, device)
    if teacher is not None:
        teacher.eval()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    accelerator, ddp_model, optimizer, schedule = _prepare(peft_model, trainable, cfg, lr, precision, device,
                                                           max_seconds)
    shard = windows[accelerator.process_index::accelerator.num_processes]  # each rank its own windows
    batches = _batches(shard, cfg.batch_size, cfg.seed)
    peft_model.train()
    losses, tokens, start = [], 0, time.perf_counter()
    use_labels = teacher is None or cfg.distill_alpha < 1.0
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False,
               total=float("inf") if max_seconds else None)  # on the clock the step cap is no ETA
    done = 0
    for step in bar:
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        step_loss, step_tokens = _accumulate(ddp_model, batches, cfg, accelerator, device, teacher, use_labels)
        tokens += step_tokens
        accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(step_loss)
        done = step + 1
        info = _progress(step, cfg.steps, step_loss, tokens, time.perf_counter() - start, max_seconds,
                         schedule.get_last_lr()[0], peft_model)
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{info['tokens_per_s']:.0f}")
        if on_step:
            on_step(info)
    del ddp_model, optimizer
    accelerator.free_memory()
    merged = _unwrap(model, peft_model, cfg, tier)
    del peft_model, base
    seconds = time.perf_counter() - start
    stats = {"steps": done, "lr": lr, "precision": precision, "tokens": tokens, "seconds": seconds,
             "tokens_per_s": tokens / seconds if seconds else math.nan,
             "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
             "trainable_params": sum(p.numel() for p in trainable), "trainable": cfg.trainable,
             "loss": "distill" if teacher is not None else "labels"}
    return merged, stats
