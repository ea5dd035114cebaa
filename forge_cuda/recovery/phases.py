"""The recovery phases of a forge cycle and the evaluations around them (a mixin of forge.ForgeRun).

Block-local distillation, then global KD (or LoRA on labels), each sized by the budget
or the fixed step settings; curve points (bpb and PPL against recovery tokens) on the
first eval windows; the out-of-domain row. ForgeRun provides cfg, splits, tokenizer,
tier, device, status, work and the track persistence.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch

from forge_cuda import distributed
from forge_cuda.evaluate import perplexity
from forge_cuda.families import family_for
from forge_cuda.recovery.blocklocal import train_blocks
from forge_cuda.recovery.budget import parse_budget, plan_budget
from forge_cuda.recovery.recipe import warmup_steps
from forge_cuda.train import train_model


class RecoveryPhases:
    def _prepare_data(self) -> None:
        """The base tokenizer's windows, eval windows, byte table, curve subset and out-of-domain set."""
        from forge_cuda.track_data import base_data

        self.base_rows = len(self.tokenizer)
        self.counted_vocab = None  # the vocabulary plan, counted once (_vocab_plan)
        self.views = {"base": base_data(self.cfg, self.tokenizer)}
        self.splits = self.views["base"].splits

    def _data(self, model):
        """The data as ``model``'s own tokenizer reads it: the base one, or the trimmed vocabulary of a
        forged model (same documents, its own windows and byte table; built once)."""
        from forge_cuda.pruning.defrag import model_layout
        from forge_cuda.track_data import retokenized
        from forge_cuda.vocab.tokenizer_files import trim_hf_tokenizer

        ids = model_layout(model).vocab_ids
        key = "base" if ids is None else "trimmed"
        if key not in self.views:
            self.views[key] = retokenized(self.cfg, self.views["base"], trim_hf_tokenizer(self.tokenizer, ids))
        return self.views[key]

    def _match_teacher(self, forged) -> None:
        """A trimmed student learns from the teacher's distribution over the same kept rows: the teacher's
        embedding and head keep those rows too (its logits there are unchanged, renormalised by the KL)."""
        from forge_cuda.pruning.defrag import model_layout
        from forge_cuda.vocab.surgery import restrict_vocab

        teacher, ids = self.teacher_model, model_layout(forged).vocab_ids
        if teacher is None or ids is None or model_layout(teacher).vocab_ids is not None:
            return
        restrict_vocab(teacher, ids)

    def _schedule(self, state: dict, forged) -> int:
        """The cycle count and the base fraction the vocabulary gives away up front, decided once (kept in
        the state): free rows go whole in cycle 1, so only heads and channels pace the cycles."""
        from forge_cuda.pruning.step import default_cycles

        cfg = self.cfg
        if "schedule" not in state:
            target, free = cfg.prune.target_params, 0.0
            plan = self._vocab_plan(forged, 1) if target is not None else None
            if plan is not None:
                free = plan.removed_params / state["baseline"]["params"]
            cycles = cfg.cycles or default_cycles(target, cfg.max_step_params, free)
            state["schedule"] = {"cycles": cycles, "free": free}
        self.status.update(cycles=state["schedule"]["cycles"])
        return state["schedule"]["cycles"]

    def _vocab_plan(self, forged, cycle: int):
        """The token rows ``--vocab`` lets go, offered to the first cycle that still has them (they are
        free, so that cycle takes them whole); counted on the domain's train + calibration documents."""
        from forge_cuda.pruning.command import vocab_plan
        from forge_cuda.pruning.defrag import model_layout

        if model_layout(forged).vocab_ids is not None:
            return None
        if self.counted_vocab is None:  # the count depends on the tokenizer and the domain only
            self.status.update(phase="importance", cycle=cycle,
                               message=f"counting the domain's tokens ({self.cfg.domain})")
            self.counted_vocab = vocab_plan(forged, self.tokenizer, self.cfg.domain, self.cfg.prune)
        return self.counted_vocab

    def _evaluate(self, model, desc: str, windows=None) -> dict:
        self.status.update(phase="evaluate", message=desc)
        data = self._data(model)
        return perplexity(model, data.splits.eval if windows is None else windows, self.cfg.eval_batch_size,
                          desc=f"eval {desc}", progress=self.progress, token_bytes=data.token_bytes)

    def _evaluate_ood(self, model, desc: str) -> dict | None:
        """The same model on held-out English prose (``docs``): what the domain tuning costs elsewhere."""
        ood = self._data(model).ood
        if ood is None:
            return None
        return {**self._evaluate(model, f"{desc} ({ood.source})", ood.windows), "domain": ood.source,
                "documents": len(ood.documents)}

    def _curve_point(self, curve: list, model, cycle: int, phase: str, tokens: int) -> None:
        data = self._data(model)
        ev = perplexity(model, data.curve_windows, self.cfg.eval_batch_size, progress=False,
                        token_bytes=data.token_bytes)
        curve.append({"cycle": cycle, "phase": phase, "tokens": tokens, "bpb": ev["bpb"], "ppl": ev["ppl"]})

    def _train(self, model, cycle: int, track: str, teacher=None, steps: int | None = None,
               seconds: float | None = None, curve: list | None = None, offset: int = 0):
        cfg = self.cfg.track_train(track)
        cfg.seed = self.cfg.seed + cycle  # same seed for both tracks within a stage
        if steps is not None:  # a token budget: 10% warmup; on the clock (seconds) the configured warmup
            cfg.steps = steps
            cfg.warmup_steps = warmup_steps(steps) if self.cfg.budget and not seconds else cfg.warmup_steps
        per_step = cfg.batch_size * cfg.grad_accum * self.cfg.seq_len
        every = max(1, cfg.steps // self.cfg.curve_points) if self.cfg.curve_points else 0
        marks = [seconds * k / self.cfg.curve_points for k in range(1, self.cfg.curve_points + 1)] \
            if seconds and self.cfg.curve_points else []
        start = time.perf_counter()

        def on_step(info):
            self.status.update(phase="control" if track == "control" else "train", cycle=cycle, step=info["step"],
                               steps=info["steps"], loss=info["loss"], tokens_per_s=info["tokens_per_s"],
                               eta_s=info["eta_s"], message=f"{track} cycle {cycle}")
            due = (marks and time.perf_counter() - start >= marks[0]) if seconds else \
                (every and (info["step"] % every == 0 or info["step"] == cfg.steps))
            if curve is not None and due:
                if marks:
                    marks.pop(0)
                self._curve_point(curve, info["model"], cycle, "kd" if track == "forged" else "labels",
                                  offset + info["step"] * per_step)

        if cfg.steps == 0:
            return model, {"steps": 0, "tokens": 0, "seconds": 0.0, "lr": cfg.lr, "trainable": cfg.trainable}
        model, stats = train_model(model, self._data(model).splits.train, cfg, desc=f"{track} c{cycle}", on_step=on_step,
                                   progress=self.progress, tier=self.tier.name, device=self.device,
                                   teacher=teacher, max_seconds=seconds)
        stats["window_tokens"] = stats["steps"] * per_step
        return model, stats

    def _plan(self, cycle: int) -> dict:
        """This cycle's recovery: block-local and KD steps (or seconds), from the budget or the fixed settings."""
        cfg = self.cfg
        if cfg.budget is None:
            return {"blocklocal_steps": cfg.blocklocal.steps, "kd_steps": cfg.train.steps,
                    "blocklocal_seconds_per_block": None, "kd_seconds": None}
        share = cfg.blocklocal_share if self.tier.name != "nf4" else 0.0
        teacher = self.teacher_model
        blocks = len(family_for(teacher.config.model_type).decoder_layers(teacher)) if teacher is not None else 1
        plan = plan_budget(parse_budget(cfg.budget), self.cycles, cfg.train.batch_size * cfg.train.grad_accum *
                           cfg.seq_len, share if teacher is not None else 0.0, blocks,
                           blocklocal_tokens_per_step=cfg.train.batch_size * cfg.seq_len)
        return plan[cycle - 1].to_dict()

    def _blocklocal(self, forged, cycle: int, plan: dict) -> dict:
        """Block-local distillation toward the teacher's blocks (skipped at 0 steps: the refit alone)."""
        cfg = self.cfg
        if not plan["blocklocal_steps"] or self.teacher_model is None or self.tier.name == "nf4":
            return {"steps": 0, "tokens": 0, "seconds": 0.0, "blocks": []}
        bl = replace(cfg.blocklocal, steps=plan["blocklocal_steps"], batch_size=cfg.train.batch_size,
                     max_seconds=plan["blocklocal_seconds_per_block"], seed=cfg.seed + cycle)
        train = self._data(forged).splits.train
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
        windows = train[order]  # one window order for every cycle: the state cache is reused

        def on_block(info):
            self.status.update(phase="blocklocal", cycle=cycle, step=info["block"] + 1, steps=info["blocks"],
                               loss=info["last_loss"], message=f"block-local cycle {cycle}")

        folder = self.work / "teacher_states" / f"rank{distributed.state().process_index}"  # each rank its own
        return train_blocks(forged, self.teacher_model, windows, bl, folder, progress=self.progress,
                            on_block=on_block)

    def _teacher(self, forged):
        """The domain-tuned unpruned model (stage 0), frozen: distillation's teacher and block-local's targets."""
        cfg = self.cfg
        blocklocal = (cfg.budget is not None and cfg.blocklocal_share > 0) or cfg.blocklocal.steps > 0
        if cfg.recovery != "distill" and not blocklocal:
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

