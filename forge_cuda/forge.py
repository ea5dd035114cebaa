"""`sentinel forge`: domain training + importance-guided pruning of heads and MLP channels in cycles.

Stage 0 evaluates the base model (baseline), then trains it on the domain for
``steps``; that model is the teacher and seeds both tracks. Each cycle k then
prunes the forged track k/cycles of the way to the target (``target_params`` of
the base parameters, allocated over heads and channels; or the explicit levels),
with importance on the calibration split, defrag and optional mitosis, and
recovers: block-local distillation (each decoder block toward the teacher's block,
forge_cuda.recovery.blocklocal), then global KD of the teacher's logits
(``recovery="distill"``) or LoRA on labels (``recovery="lora"``, the original forge).
The control trains the unpruned model for the same tokens on the same windows with
the same trainable parameters, on labels. Every number comes from one evaluator on the
held-out eval documents (bits per byte and PPL; an out-of-domain row on ``docs``).

``budget`` ("45m" wall time or "200k" tokens, forge_cuda.recovery.budget) sizes the
recovery instead of ``train.steps``: split evenly over the cycles, ``blocklocal_share``
of each cycle to block-local distillation, the rest to KD; stage 0 keeps ``train.steps``.
Curves (bpb and PPL against recovery tokens, forged and control, ``curve_points`` per
phase on the first ``curve_eval_tokens`` eval tokens) go into the report.

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
from forge_cuda import distributed
from forge_cuda.recovery.blocklocal import BlockLocalConfig
from forge_cuda.recovery.budget import parse_budget
from forge_cuda.recovery.phases import RecoveryPhases
from forge_cuda.recovery.recipe import default_lr
from forge_cuda.report import plural
from forge_cuda.run_facts import model_numbers, pick_device
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.step import prune_once
from forge_cuda.status import Status
from forge_cuda.tiers import choose_tier
from forge_cuda.train import TrainConfig

RECOVERIES = ("distill", "lora")
from sentinel.atomic import read_json, write_json
from sentinel.errors import SentinelError


@dataclass
class ForgeConfig:
    model: str
    domain: str = "code"
    prune_level: float = 0.33
    cycles: int | None = None  # None: 2 for head levels, else one per <= max_step_params of heads + channels
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
    budget: str | None = None  # "45m" / "200k": recovery budget (forge_cuda.recovery.budget); None: train.steps
    blocklocal_share: float = 0.0  # of each cycle's budget (0: measured better at equal wall time, recipe.py)
    distill_lr: float | None = None  # the forged track's KD peak rate alone (None: train.lr, else the recipe)
    blocklocal: BlockLocalConfig = field(default_factory=BlockLocalConfig)  # steps used without a budget
    ood_domain: str | None = "docs"  # out-of-domain row (English prose); None or the domain itself: no row
    ood_eval_tokens: int = 4096
    curve_points: int = 4  # evaluations per recovery phase
    curve_eval_tokens: int = 4096
    keep_teacher: bool = False  # also write stage 0's model to <out>/teacher (benches reuse it)
    tier: str = "auto"
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        if self.recovery not in RECOVERIES:
            raise SentinelError(f"unknown recovery {self.recovery!r}; choose from {', '.join(RECOVERIES)}")
        if self.cycles is None and self.prune.target_params is None:
            self.cycles = 2  # with a size target ForgeRun counts them, once it knows the free vocabulary rows
        if self.budget is not None:
            parse_budget(self.budget)  # one error line now, not after stage 0

    def track_train(self, track: str) -> TrainConfig:
        """What each stage trains: stage 0, the control and the forged track (LoRA when recovery is lora);
        the learning rate from the recipe unless one was given."""
        cfg = copy.deepcopy(self.train)
        if self.recovery == "lora":
            cfg.trainable = "lora"
        distill = track == "forged" and self.recovery == "distill"
        if distill and self.distill_lr is not None:
            cfg.lr = self.distill_lr
        if cfg.lr is None:
            cfg.lr = default_lr(cfg.trainable, "distill" if distill else "labels")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


class ForgeRun(RecoveryPhases):
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
            save_model(model, self.work / f"cycle_{cycle}" / track, tokenizer=self._data(model).tokenizer,
                       force=True)
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
        shutil.rmtree(self.work / f"cycle_{cycle}" / "blocklocal", ignore_errors=True)  # the mid-cycle checkpoint
        for old in self.work.glob("cycle_*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    # --- the run ------------------------------------------------------------------------------
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

    def _stage0(self, cfg) -> tuple[dict, object]:
        """Baseline evaluation, then domain training of the base: the teacher and both tracks' start."""
        base = load_model(self.source, device=self.device)
        gpu = torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None
        self.tier = choose_tier(param_count(base), self.device.type, gpu, cfg.tier)
        state = {"config": cfg.to_dict(), "tier": self.tier.to_dict(), "data": self.splits.stats,
                 "source": str(self.source), "device": str(self.device), "cycles": [],
                 "accepted_cycle": 0, "stopped_by_budget": False, "seconds": {}, "resumed": []}
        ood = self.views["base"].ood
        if ood is not None:
            state["data"]["ood"] = {"source": ood.source, **ood.stats}
        self.status.update(phase="baseline", message="baseline evaluation")
        state["baseline"] = {**self._evaluate(base, "baseline"), **model_numbers(base)}
        state["baseline_ood"] = self._evaluate_ood(base, "baseline")
        forged, stats = self._train(base, 0, "stage0")
        row = {"cycle": 0, "level": 0.0, "train": stats, "forged": {**self._evaluate(forged, "stage 0"),
                                                                      **model_numbers(forged)}}
        row["control"] = dict(row["forged"])
        row["forged_ood"] = self._evaluate_ood(forged, "stage 0")
        print(f"stage 0: baseline {state['baseline']['bpb']:.4f} bpb (PPL {state['baseline']['ppl']:.2f}) -> "
              f"domain-tuned {row['forged']['bpb']:.4f} bpb (PPL {row['forged']['ppl']:.2f})")
        state["cycles"].append(row)
        self._save_track(forged, 0, "forged")
        self._checkpoint(state, 0)
        return state, forged

    def _run(self) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.tokenizer = load_tokenizer(self.source)
        self._prepare_data()
        state = read_json(self.work / "state.json") if (self.work / "state.json").exists() else None
        if state and state["config"] != json.loads(json.dumps(cfg.to_dict())):
            raise SentinelError(f"{self.work} was started with other settings; use --force to start over")
        if state is None:
            state, forged = self._stage0(cfg)
            control = copy.deepcopy(forged) if cfg.control else None
            self.teacher_model = self._teacher(forged)
        else:
            from forge_cuda.tiers import Tier

            self.tier = Tier(**state["tier"])
            done = state["completed_cycle"]
            forged = self._load_track(done, "forged")
            control = (self._load_track(done, "control") if done > 0 else copy.deepcopy(forged)) \
                if cfg.control else None
            self.teacher_model = self._teacher(None)
            self._match_teacher(forged)
            state.setdefault("resumed", []).append({"after_cycle": done,
                                                    "mid_cycle": (state.get("partial") or {}).get("cycle")})
        self.cycles = self._schedule(state, forged)
        trained = cfg.track_train("forged").trainable
        print(f"tier: {self.tier.name} ({self.tier.reason}); recovery: {cfg.recovery}, "
              f"{'LoRA adapters' if trained == 'lora' else 'all parameters'} trained; "
              f"{plural(self.cycles, 'cycle')}" + (f"; budget {parse_budget(cfg.budget).describe()}"
                                                   if cfg.budget else ""))
        base = {"params": state["baseline"]["params"], "channels": state["baseline"]["mlp_channels_total"],
                "free": state["schedule"]["free"]}
        for cycle in range(state["completed_cycle"] + 1, self.cycles + 1):
            if state["stopped_by_budget"]:
                break
            forged, control = self._cycle(state, cycle, forged, control, base)
        state["seconds"]["total_this_session"] = time.perf_counter() - t0
        return self._finish(state)

    def _offsets(self, state: dict) -> tuple[int, int]:
        """Recovery tokens the forged track and the control have trained on before this cycle."""
        rows = [c for c in state["cycles"] if c["cycle"] > 0]
        forged = sum(c["blocklocal"]["tokens"] + c["train"].get("window_tokens", 0) for c in rows)
        control = sum(c.get("control_train", {}).get("window_tokens", 0) for c in rows)
        return forged, control

    def _prune_and_localise(self, state: dict, cycle: int, forged, base: dict, plan: dict, offset: int) -> dict:
        """Prune one step, score it, run block-local; the row so far is saved so a kill resumes after it."""
        cfg = self.cfg
        self.status.update(phase="importance", cycle=cycle, message=f"scoring units ({cfg.prune.criterion})")
        pruning = prune_once(forged, self._data(forged).splits.calibration, cfg.prune_level, cfg.prune,
                             seed=cfg.seed + cycle, vocab=self._vocab_plan(forged, cycle),
                             on_phase=lambda p: self.status.update(phase=p, cycle=cycle),
                             cycle_progress=cycle / self.cycles, base=base, progress=self.progress)
        row = {"cycle": cycle, "level": cfg.prune_level * cycle / self.cycles, "target_params": pruning["target_params"],
               "pruning": pruning, "plan": plan, "one_shot": self._evaluate(forged, f"pruned c{cycle}"),
               "curve": {"forged": [], "control": []}}
        self._match_teacher(forged)
        self._curve_point(row["curve"]["forged"], forged, cycle, "pruned", offset)
        self.status.update(phase="blocklocal", cycle=cycle, message=f"block-local cycle {cycle}")
        row["blocklocal"] = self._blocklocal(forged, cycle, plan)
        if row["blocklocal"]["steps"]:
            row["after_blocklocal"] = self._evaluate(forged, f"block-local c{cycle}")
            self._curve_point(row["curve"]["forged"], forged, cycle, "blocklocal", offset + row["blocklocal"]["tokens"])
        self._save_track(forged, cycle, "blocklocal")
        state["partial"] = {"cycle": cycle, "row": row}
        if self.main:
            write_json(self.work / "state.json", state)
        return row

    def _cycle(self, state: dict, cycle: int, forged, control, base: dict):
        cfg = self.cfg
        plan = self._plan(cycle)
        done_forged, done_control = self._offsets(state)
        partial = state.get("partial")
        if partial and partial["cycle"] == cycle:  # killed after block-local: continue from its checkpoint
            row, forged = partial["row"], self._load_track(cycle, "blocklocal")
            self._match_teacher(forged)
        else:
            row = self._prune_and_localise(state, cycle, forged, base, plan, done_forged)
        kd_teacher = self.teacher_model if cfg.recovery == "distill" else None
        forged, row["train"] = self._train(forged, cycle, "forged", teacher=kd_teacher, steps=plan["kd_steps"],
                                           seconds=plan["kd_seconds"], curve=row["curve"]["forged"],
                                           offset=done_forged + row["blocklocal"]["tokens"])
        row["forged"] = {**self._evaluate(forged, f"forged c{cycle}"), **model_numbers(forged)}
        row["forged_ood"] = self._evaluate_ood(forged, f"forged c{cycle}")
        if control is not None:  # the same recovery tokens, on labels
            per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.seq_len
            steps = row["train"]["steps"] + row["blocklocal"]["tokens"] // per_step
            if cycle == 1:
                self._curve_point(row["curve"]["control"], control, cycle, "start", 0)
            control, row["control_train"] = self._train(control, cycle, "control", steps=steps,
                                                        curve=row["curve"]["control"], offset=done_control)
            row["control"] = {**self._evaluate(control, f"control c{cycle}"), **model_numbers(control)}
        state["cycles"].append(row)
        state.pop("partial", None)
        print(f"cycle {cycle}/{self.cycles}: {row['pruning']['layout_summary']}; params {row['forged']['params']:,}; "
              f"bpb pruned {row['one_shot']['bpb']:.4f} -> recovered {row['forged']['bpb']:.4f}"
              + (f", control {row['control']['bpb']:.4f}" if "control" in row else ""))
        self.status.update(phase="save", cycle=cycle, message="saving cycle checkpoint")
        self._save_track(forged, cycle, "forged")
        if control is not None:
            self._save_track(control, cycle, "control")
        row["within_budget"] = self._within_budget(row)
        if row["within_budget"]:
            state["accepted_cycle"] = cycle
        else:
            state["stopped_by_budget"] = True
        self._checkpoint(state, cycle)
        return forged, control

    def _within_budget(self, row: dict) -> bool:
        if self.cfg.max_ppl_increase is None:
            return True
        if "control" not in row:
            raise SentinelError("--max-ppl-increase compares against the control run; drop --no-control")
        key = "ppl" if row["forged"].get("vocab_size") == row["control"].get("vocab_size") else "bpb"
        return row["forged"][key] <= row["control"][key] * (1 + self.cfg.max_ppl_increase)  # bpb once vocabularies differ

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
        if self.cfg.keep_teacher:
            shutil.rmtree(self.work / "teacher", ignore_errors=True)
            shutil.copytree(self.work / "cycle_0" / "forged", self.work / "teacher")
        report = write_report(state, self.work)
        self.status.update(phase="done", message=f"forged model: {self.out / 'model'}")
        for old in self.work.glob("cycle_*"):
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.work / "teacher_states", ignore_errors=True)
        (self.work / "state.json").unlink()
        if self.out.exists():
            shutil.rmtree(self.out)
        self.work.rename(self.out)
        return report
