"""`sentinel forge`: domain training + importance-guided pruning of heads and MLP channels in cycles.

Stage 0 evaluates the base model (baseline), then trains it on the domain for
``steps``; that model is the teacher and seeds both tracks. Each cycle k then
prunes the forged track k/cycles of the way to the target (``target_params`` of
the base parameters, allocated over heads and channels; or the explicit levels),
with importance on the calibration split, defrag and optional mitosis, and
recovers: by distilling the teacher's logits (``recovery="distill"``) or by LoRA
on labels (``recovery="lora"``, the original forge). The control trains the
unpruned model for the same steps on the same windows with the same trainable
parameters, on labels. Every number comes from one evaluator on the held-out eval split.

Work lives in ``<out>.partial/`` (resumable with ``--resume``) and is renamed
to ``<out>`` only when the run is complete.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from forge_cuda.checkpoint import load_model, load_tokenizer, param_count, save_model
from forge_cuda.data import build_splits
from forge_cuda.pruning.defrag import model_layout
from forge_cuda import distributed
from forge_cuda.evaluate import perplexity
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.space import kv_bytes_per_token
from forge_cuda.pruning.step import default_cycles, prune_once
from forge_cuda.status import Status
from forge_cuda.tiers import choose_tier
from forge_cuda.train import TrainConfig, train_model

RECOVERIES = ("distill", "lora")
from sentinel.atomic import read_json, write_json
from sentinel.errors import SentinelError


@dataclass
class ForgeConfig:
    model: str
    domain: str = "code"
    prune_level: float = 0.33
    cycles: int | None = None  # None: 2 for head levels, else one cycle per <= max_step_params of the base
    max_step_params: float = 0.10
    recovery: str = "distill"
    max_ppl_increase: float | None = None  # e.g. 0.02: stop once forged > control * 1.02
    prune: PruneOptions = field(default_factory=PruneOptions)
    train: TrainConfig = field(default_factory=TrainConfig)
    seq_len: int = 256
    train_tokens: int | None = 400_000
    eval_tokens: int = 16_384
    calib_windows: int = 16
    eval_batch_size: int = 8
    control: bool = True
    tier: str = "auto"
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        if self.recovery not in RECOVERIES:
            raise SentinelError(f"unknown recovery {self.recovery!r}; choose from {', '.join(RECOVERIES)}")
        if self.cycles is None:
            target = self.prune.target_params
            self.cycles = default_cycles(target, self.max_step_params) if target is not None else 2

    def track_train(self, track: str) -> TrainConfig:
        """What each stage trains: stage 0, the control and the forged track (LoRA when recovery is lora)."""
        cfg = copy.deepcopy(self.train)
        if self.recovery == "lora":
            cfg.trainable = "lora"
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return distributed.local_device()
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SentinelError(f"--device {requested}: no CUDA device is visible on this machine")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SentinelError(f"--device {requested!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SentinelError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise SentinelError(f"--device {requested}: the forge runs on cpu or cuda")
    return device


def model_numbers(model) -> dict:
    """Size numbers reported per row: params, bytes as stored, KV bytes per token (fp16 cache)."""
    layout = model_layout(model)
    kv_fp16 = kv_bytes_per_token(model, layout, 2)
    params = param_count(model)
    dtype_bytes = next(model.parameters()).element_size()
    return {"params": params, "bytes": params * dtype_bytes, "bytes_fp16": params * 2,
            "kv_bytes_per_token_fp16": kv_fp16, "q_heads": layout.q_counts, "kv_heads": layout.kv_counts,
            "q_heads_total": sum(layout.q_counts), "kv_heads_total": sum(layout.kv_counts),
            "mlp_channels": layout.mlp_widths, "mlp_channels_total": sum(w or 0 for w in layout.mlp_widths),
            "layout": layout.to_dict()}


class ForgeRun:
    """One forge run: holds both tracks, the splits, the status file and the resumable state."""

    def __init__(self, cfg: ForgeConfig, out: Path, resume: bool = False, force: bool = False,
                 progress: bool = True, source: Path | None = None):
        """``source``: the resolved local folder of ``cfg.model`` (the CLI resolves names); default cfg.model."""
        from forge_cuda.families import supported_model_types
        from sentinel.atomic import check_creatable, check_output_dir
        from sentinel.validate import check_model_folder

        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.work = self.out.with_name(self.out.name + ".partial")
        # Everything that can be checked is checked before anything is created (issue: no leftovers).
        self.source = Path(source if source is not None else cfg.model)
        check_model_folder(self.source, supported_model_types())
        check_output_dir(self.out, inputs=[self.source], force=force)
        check_creatable(self.work)
        if self.work.exists() and not resume and not force:
            raise SentinelError(f"{self.work} holds an interrupted run: add --resume to continue it "
                                "or --force to start over")
        if resume and not (self.work / "state.json").exists():
            raise SentinelError(f"nothing to resume: {self.work}/state.json not found")
        self.device = pick_device(cfg.device)
        distributed.state(cpu=self.device.type == "cpu")  # under a launcher: join the process group now
        distributed.wait()  # every rank has checked the folders before the main process changes them
        self.main = distributed.is_main()
        if self.main:
            if self.work.exists() and not resume:
                shutil.rmtree(self.work)
            self.work.mkdir(parents=True, exist_ok=True)
        self.status = Status(self.work / "status.json", cfg.cycles, enabled=self.main)
        distributed.wait()

    # --- persistence -------------------------------------------------------------------------
    def _save_track(self, model, cycle: int, track: str) -> None:
        if self.main:
            save_model(model, self.work / f"cycle_{cycle}" / track, tokenizer=self.tokenizer, force=True)
        distributed.wait()

    def _load_track(self, cycle: int, track: str):
        return load_model(self.work / f"cycle_{cycle}" / track, device=self.device)

    def _checkpoint(self, state: dict, cycle: int) -> None:
        """Record a completed cycle; keep only its folders and the last accepted one."""
        state["completed_cycle"] = cycle
        if not self.main:
            return
        write_json(self.work / "state.json", state)
        keep = {f"cycle_{cycle}", f"cycle_{state['accepted_cycle']}", "cycle_0"}  # cycle 0 is the teacher
        for old in self.work.glob("cycle_*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    # --- phases ------------------------------------------------------------------------------
    def _evaluate(self, model, desc: str) -> dict:
        self.status.update(phase="evaluate", message=desc)
        return perplexity(model, self.splits.eval, self.cfg.eval_batch_size, desc=f"eval {desc}",
                          progress=self.progress)

    def _train(self, model, cycle: int, track: str, teacher=None):
        cfg = self.cfg.track_train(track)
        cfg.seed = self.cfg.seed + cycle  # same seed for both tracks within a stage

        def on_step(info):
            self.status.update(phase="control" if track == "control" else "train", cycle=cycle, step=info["step"],
                               steps=info["steps"], loss=info["loss"], tokens_per_s=info["tokens_per_s"],
                               eta_s=info["eta_s"], message=f"{track} cycle {cycle}")

        return train_model(model, self.splits.train, cfg, desc=f"{track} c{cycle}", on_step=on_step,
                           progress=self.progress, tier=self.tier.name, device=self.device, teacher=teacher)

    def _teacher(self, forged):
        """The domain-tuned unpruned model (stage 0), frozen; only distillation needs it."""
        if self.cfg.recovery != "distill":
            return None
        teacher = copy.deepcopy(forged) if forged is not None else self._load_track(0, "forged")
        for p in teacher.parameters():
            p.requires_grad_(False)
        if self.device.type == "cuda":  # the teacher only runs forward: half the memory in bf16/fp16
            from forge_cuda.train import resolve_precision

            half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_precision(self.cfg.train.precision,
                                                                                       self.device))
            if half is not None:
                teacher = teacher.to(half)
        return teacher.eval()

    def run(self) -> dict:
        """Run (or resume) the forge; on failure status.json says so, and a run that completed no
        stage leaves nothing behind (a later stage's failure keeps ``.partial`` for ``--resume``)."""
        try:
            return self._run()
        except BaseException as e:
            if self.main:
                if (self.work / "state.json").exists():
                    self.status.update(phase="failed", message=f"{type(e).__name__}: {e}"[:500])
                else:
                    shutil.rmtree(self.work, ignore_errors=True)
            raise

    def _run(self) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.tokenizer = load_tokenizer(self.source)
        self.splits = build_splits(cfg.domain, self.tokenizer, cfg.seq_len, seed=cfg.seed,
                                   max_tokens={"train": cfg.train_tokens, "eval": cfg.eval_tokens,
                                               "calibration": cfg.calib_windows * cfg.seq_len})
        state = read_json(self.work / "state.json") if (self.work / "state.json").exists() else None
        if state and state["config"] != json.loads(json.dumps(cfg.to_dict())):
            raise SentinelError(f"{self.work} was started with other settings; use --force to start over")
        if state is None:
            base = load_model(self.source, device=self.device)
            gpu = torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None
            self.tier = choose_tier(param_count(base), self.device.type, gpu, cfg.tier)
            state = {"config": cfg.to_dict(), "tier": self.tier.to_dict(), "data": self.splits.stats,
                     "source": str(self.source), "device": str(self.device), "cycles": [],
                     "accepted_cycle": 0, "stopped_by_budget": False, "seconds": {}, "resumed": []}
            self.status.update(phase="baseline", message="baseline evaluation")
            state["baseline"] = {**self._evaluate(base, "baseline"), **model_numbers(base)}
            forged, stats = self._train(base, 0, "stage0")
            row = {"cycle": 0, "level": 0.0, "train": stats, "forged": {**self._evaluate(forged, "lora c0"),
                                                                          **model_numbers(forged)}}
            row["control"] = dict(row["forged"])
            print(f"stage 0: baseline PPL {state['baseline']['ppl']:.2f} -> domain-tuned {row['forged']['ppl']:.2f}")
            state["cycles"].append(row)
            self._save_track(forged, 0, "forged")
            self._checkpoint(state, 0)
            control = copy.deepcopy(forged) if cfg.control else None
            teacher = self._teacher(forged)
        else:
            from forge_cuda.tiers import Tier

            self.tier = Tier(**state["tier"])
            done = state["completed_cycle"]
            forged = self._load_track(done, "forged")
            control = (self._load_track(done, "control") if done > 0 else copy.deepcopy(forged)) \
                if cfg.control else None
            teacher = self._teacher(None)
            state.setdefault("resumed", []).append({"after_cycle": done})
        print(f"tier: {self.tier.name} ({self.tier.reason}); recovery: {cfg.recovery} "
              f"({cfg.track_train('forged').trainable} parameters); {cfg.cycles} cycles")
        base = {"params": state["baseline"]["params"], "channels": state["baseline"]["mlp_channels_total"]}
        for cycle in range(state["completed_cycle"] + 1, cfg.cycles + 1):
            if state["stopped_by_budget"]:
                break
            level = cfg.prune_level * cycle / cfg.cycles
            self.status.update(phase="importance", cycle=cycle, message=f"scoring units ({cfg.prune.criterion})")
            pruning = prune_once(forged, self.splits.calibration, cfg.prune_level, cfg.prune, seed=cfg.seed + cycle,
                                 on_phase=lambda p: self.status.update(phase=p, cycle=cycle),
                                 cycle_progress=cycle / cfg.cycles, base=base, progress=self.progress)
            row = {"cycle": cycle, "level": level, "target_params": pruning["target_params"], "pruning": pruning,
                   "one_shot": self._evaluate(forged, f"pruned c{cycle}")}
            forged, row["train"] = self._train(forged, cycle, "forged", teacher=teacher)
            row["forged"] = {**self._evaluate(forged, f"forged c{cycle}"), **model_numbers(forged)}
            if control is not None:
                control, _ = self._train(control, cycle, "control")
                row["control"] = {**self._evaluate(control, f"control c{cycle}"), **model_numbers(control)}
            state["cycles"].append(row)
            print(f"cycle {cycle}/{cfg.cycles}: {row['pruning']['layout_summary']}; params "
                  f"{row['forged']['params']:,}; PPL pruned {row['one_shot']['ppl']:.2f} -> recovered "
                  f"{row['forged']['ppl']:.2f}" + (f", control {row['control']['ppl']:.2f}" if "control" in row else ""))
            self.status.update(phase="save", cycle=cycle, message="saving cycle checkpoint")
            self._save_track(forged, cycle, "forged")
            if control is not None:
                self._save_track(control, cycle, "control")
            within = self._within_budget(row)
            row["within_budget"] = within
            if within:
                state["accepted_cycle"] = cycle
            else:
                state["stopped_by_budget"] = True
            self._checkpoint(state, cycle)
        state["seconds"]["total_this_session"] = time.perf_counter() - t0
        return self._finish(state)

    def _within_budget(self, row: dict) -> bool:
        if self.cfg.max_ppl_increase is None:
            return True
        if "control" not in row:
            raise SentinelError("--max-ppl-increase compares against the control run; drop --no-control")
        return row["forged"]["ppl"] <= row["control"]["ppl"] * (1 + self.cfg.max_ppl_increase)

    def _finish(self, state: dict) -> dict:
        from forge_cuda.report import write_report

        distributed.wait()
        if not self.main:  # the main process writes the outputs; the others are done
            return {}

        self.status.update(phase="save", message="writing report")
        final = self.work / "model"
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(self.work / f"cycle_{state['accepted_cycle']}" / "forged", final)
        report = write_report(state, self.work)
        self.status.update(phase="done", message=f"forged model: {self.out / 'model'}")
        for old in self.work.glob("cycle_*"):
            shutil.rmtree(old, ignore_errors=True)
        (self.work / "state.json").unlink()
        if self.out.exists():
            shutil.rmtree(self.out)
        self.work.rename(self.out)
        return report
