"""GPU check worker: tokens/s and peak GPU memory of each forge stage, through the forge's own functions.

One run = one model shape x one trainable mode (full, lora, nf4), walked the way a
forge cycle walks it, holding what the forge holds at that point: baseline eval
(``perplexity``), stage 0 (``train_model`` on labels), the pruning step
(``prune_once``: importance, search, defrag, refit), distillation (``train_model``
with a half-precision teacher, as ``ForgeRun._teacher`` makes it), the control
(``train_model`` on labels, unpruned) and a save (``save_model``). Results are
rewritten after every stage, so a run killed at its deadline keeps what it measured.

    python -m bench.gpu_check_stages PLAN.json RESULTS.json
"""

from __future__ import annotations

import copy
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from bench import gpu_check_api as api
from bench.gpu_check_models import build_model, full_params, shape_config

STAGES = ("eval", "stage0", "prune", "blocklocal", "distill", "control", "save")
MIN_STAGE_S = 3.0  # a stage is not started with less time than this left


class Clock:
    def __init__(self, deadline: float):
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - time.time()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, fn) -> tuple[object, dict]:
    """Run ``fn`` once: wall seconds and, on CUDA, peak/resident allocated bytes around it."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if cuda else None
    _sync(device)
    t0 = time.perf_counter()
    value = fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    return value, {"status": "ok", "seconds": seconds, "resident_bytes_before": before,
                   "peak_bytes": torch.cuda.max_memory_allocated(device) if cuda else None}


def train_config(plan: dict, mode: str):
    from forge_cuda.train import TrainConfig

    trainable = "full" if mode == "full" else "lora"
    return TrainConfig(steps=plan["steps"], batch_size=plan["batch_size"], warmup_steps=1,
                       lr=5e-5 if trainable == "full" else 2e-4, trainable=trainable, precision="auto", seed=0)


def train_stage(model, windows, plan: dict, mode: str, device, teacher=None):
    """``train_model`` once; tokens/s over the steps after the warm-up ones (kernel selection, allocator)."""
    from forge_cuda.train import train_model

    cfg = train_config(plan, mode)
    stamps = []
    (merged, stats), row = measure(device, lambda: train_model(
        model, windows, cfg, desc=mode, on_step=lambda info: stamps.append((time.perf_counter(), info["loss"])),
        progress=False, tier="nf4" if mode == "nf4" else "full", device=device, teacher=teacher))
    per_step = cfg.batch_size * cfg.grad_accum * (windows.shape[1] - 1)
    warm = min(plan["warmup_steps"], len(stamps) - 1)
    span = stamps[-1][0] - stamps[warm - 1][0] if warm >= 1 else None
    steady = (len(stamps) - warm) * per_step / span if span else stats["tokens_per_s"]
    losses = [loss for _, loss in stamps]
    row.update(tokens=stats["tokens"], steps=stats["steps"], tokens_per_s=steady,
               tokens_per_s_with_warmup=stats["tokens_per_s"], warmup_steps=warm, precision=stats["precision"],
               trainable=stats["trainable"], trainable_params=stats["trainable_params"],
               loss=stats.get("loss"), first_loss=losses[0] if losses else None,
               last_loss=losses[-1] if losses else None,
               losses_finite=all(torch.isfinite(torch.tensor(losses)).tolist()) if losses else None)
    return merged, row


def eval_stage(model, windows, device):
    from forge_cuda.evaluate import perplexity

    result, row = measure(device, lambda: perplexity(model, windows, 8, progress=False))
    row.update(tokens=result["tokens"], tokens_per_s=result["tokens"] / row["seconds"], loss=result["loss"])
    return row


def prune_stage(model, calibration, plan: dict, device, base: dict):
    """One forge cycle's pruning step (the first of ``cycles``) toward the default size target."""
    settings = api.prune_settings()(target_params=plan["target_params"], channel_group=plan["channel_group"])
    before = sum(p.numel() for p in model.parameters())
    report, row = measure(device, lambda: api.prune_once()(
        model, calibration, 0.0, settings, seed=1, progress=False, cycle_progress=1 / plan["cycles"], base=base))
    row.update(windows=len(calibration), tokens=calibration.numel(), criterion=settings.criterion,
               params_before=before, params_after=sum(p.numel() for p in model.parameters()),
               tokens_per_s=calibration.numel() / row["seconds"])
    return row


def blocklocal_stage(student, teacher, windows, plan: dict, device):
    """Block-local distillation (each pruned block toward the teacher's), as a forge cycle with --budget runs it."""
    from forge_cuda.recovery.blocklocal import BlockLocalConfig, train_blocks

    cfg = BlockLocalConfig(steps=plan["steps"], batch_size=plan["batch_size"])
    with tempfile.TemporaryDirectory(prefix="gpu-check-blocks-") as tmp:
        stats, row = measure(device, lambda: train_blocks(student, teacher, windows, cfg, Path(tmp), progress=False))
    row.update(tokens=stats["tokens"], steps=stats["steps"], blocks=len(stats["blocks"]),
               tokens_per_s=stats["tokens"] / row["seconds"] if row["seconds"] else None,
               note="tokens = steps x batch x seq_len, trained once per block; seconds include the teacher states")
    return row


def save_stage(model, device):
    from forge_cuda.checkpoint import save_model

    with tempfile.TemporaryDirectory(prefix="gpu-check-save-") as tmp:
        _, row = measure(device, lambda: save_model(model, Path(tmp) / "m"))
        row["bytes"] = sum(f.stat().st_size for f in (Path(tmp) / "m").rglob("*") if f.is_file())
    return row


def half_teacher(model, device):
    """The forge's teacher: a frozen copy, in the autocast dtype on a GPU (see ForgeRun._teacher)."""
    from forge_cuda.train import resolve_precision

    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision("auto", device))
    return (teacher.to(half) if half is not None else teacher).eval()


def windows(n: int, seq_len: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seq_len), generator=torch.Generator().manual_seed(seed))


def run_stage(stages: dict, name: str, fn, clock: Clock, device: torch.device, save) -> bool:
    """Record ``fn()`` as stage ``name`` (or why it did not run / failed); True when it completed."""
    if clock.left() < MIN_STAGE_S:
        stages[name] = {"status": "skipped", "reason": "time budget spent"}
        return False
    try:
        stages[name] = fn()
    except torch.cuda.OutOfMemoryError as e:
        stages[name] = {"status": "oom", "reason": str(e).splitlines()[0][:300],
                        "peak_bytes": torch.cuda.max_memory_allocated(device)}
    except Exception as e:  # recorded, and the run stops: later stages need this one's result
        stages[name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:500],
                        "traceback": traceback.format_exc()[-2000:]}
    save()
    return stages[name]["status"] == "ok"


def run_one(plan: dict, shape: str, mode: str, row: dict, save, clock: Clock) -> None:
    """Fill ``row["stages"]`` stage by stage (``save()`` after each); stops at the deadline or an error."""
    device = torch.device(plan["device"])
    cfg, facts = shape_config(shape, plan["dry_run"])
    row.update(config=cfg, shape_facts=facts, stages={s: {"status": "pending"} for s in STAGES})
    model = build_model(cfg, device)
    row["params"] = sum(p.numel() for p in model.parameters())
    row["full_params"], row["full_params_source"] = full_params(shape, row["params"], plan["dry_run"])
    layout = api.model_layout()(model)
    base = {"params": row["params"], "channels": sum(w or 0 for w in layout.mlp_widths)}
    seq, vocab = plan["seq_len"], cfg["vocab_size"]
    train = windows(plan["train_windows"], seq, vocab, 1)
    held = {"eval": windows(plan["eval_windows"], seq, vocab, 2), "calib": windows(plan["calib_windows"], seq, vocab, 3)}
    state = {"model": model}

    def step(name, fn):
        return run_stage(row["stages"], name, fn, clock, device, save)

    def trained(key, distill=False):
        def fn():
            teacher = state["teacher"] if distill else None
            state[key], result = train_stage(state.pop(key), train, plan, mode, device, teacher=teacher)
            return result
        return fn

    def prune_with_copies():
        """After stage 0 the forge holds the control copy and the teacher too: so does this stage."""
        state["control"] = copy.deepcopy(state["model"])
        state["teacher"] = half_teacher(state["model"], device)
        return prune_stage(state["model"], held["calib"], plan, device, base)

    def blocklocal():
        if mode == "nf4":  # the forge skips it on the NF4 tier too
            return {"status": "skipped", "reason": "the forge runs no block-local distillation on the nf4 tier"}
        result = blocklocal_stage(state["model"], state["teacher"], train, plan, device)
        for p in state["model"].parameters():  # train_blocks freezes the student; train_model re-enables
            p.requires_grad_(False)
        return result

    ok = (step("eval", lambda: eval_stage(state["model"], held["eval"], device))
          and step("stage0", trained("model"))
          and step("prune", prune_with_copies)
          and (step("blocklocal", blocklocal) or True)  # optional: its failure is recorded, the rest still runs
          and step("distill", trained("model", distill=True))
          and step("control", trained("control"))
          and (mode != "full" or step("save", lambda: save_stage(state["model"], device))))
    if mode != "full" and row["stages"]["save"]["status"] == "pending":
        row["stages"]["save"] = {"status": "skipped", "reason": "measured in the full run (same model size)"}
    for name, stage in row["stages"].items():
        if stage["status"] == "pending":
            stage.update(status="skipped", reason="an earlier stage of this run did not complete")
    row["status"] = "ok" if ok else "incomplete"
    state.clear()


def mode_unavailable(mode: str, device: torch.device) -> str | None:
    if mode != "nf4":
        return None
    if device.type != "cuda":
        return "NF4 tier unavailable: no CUDA device (bitsandbytes 4-bit kernels need an NVIDIA GPU)"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # a broken CUDA setup fails in many ways
        return f"NF4 tier unavailable: bitsandbytes unusable ({type(e).__name__}: {e})"[:300]
    return None


def main(plan_path: str, out_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    clock = Clock(plan["deadline"])
    result = {"runs": []}
    out = Path(out_path)

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        tmp.replace(out)

    for shape, mode in plan["runs"]:
        row = {"shape": shape, "mode": mode, "status": "pending"}
        result["runs"].append(row)
        why = mode_unavailable(mode, torch.device(plan["device"]))
        if why or clock.left() < MIN_STAGE_S * 3:
            row.update(status="skipped", reason=why or "time budget spent")
            save()
            continue
        save()  # a kill during this run then shows it as unfinished, not missing
        try:
            run_one(plan, shape, mode, row, save, clock)
        except Exception as e:  # building the model failed: recorded, the next run still gets its turn
            row.update(status="failed", reason=f"{type(e).__name__}: {e}"[:500], traceback=traceback.format_exc()[-2000:])
        save()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main(*sys.argv[1:3])
