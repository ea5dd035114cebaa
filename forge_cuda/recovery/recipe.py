"""The recovery recipe's defaults, each with the measurement or source it rests on.

Global KD (forge_cuda.distill through forge_cuda.train): forward KL(teacher || student)
on the full logits at T = 1, logits only (no label term): Minitron (arXiv 2407.14679)
found logits-only beat CE + KL, top-k <= 100 logits hurt, and hidden-state losses gave
nothing for width pruning. Schedule: linear warmup (10% of the steps) then cosine to 0.

Learning rates (peak), by what is trained and on what:
- full parameters, distillation: 2e-4. Inside the forge (bench/recovery_budget.py, SmolLM2-135M
  to 0.75 with the domain vocabulary, 2 cycles, 10 min of KD each run, batch 4 x 128, warmup +
  cosine on the clock): 5e-4 -> 1.1532 bits/byte (its curve first rose, 1.155 -> 1.211, before
  falling), 2e-4 -> 1.1400 (cycle 1 alone: 1.1411 vs 1.1158). Earlier, one-shot 0.75 without
  cycles (DESIGN §8, 64 steps): 5e-5 -> PPL 28.9 at 32k tokens, 5e-4 -> 26.9, 2e-3 diverges.
- full parameters, labels (stage 0 and the control, unpruned): 1e-4, the stage-0 rate of
  docs/BENCHMARKS.md (f); an unpruned model starts at its optimum and needs no big steps.
- LoRA (either loss): 2e-4, the previous default (not re-measured here).
- block-local distillation: 5e-4, normalised MSE. bench/blocklocal_loss.py (SmolLM2-135M pruned
  one-shot to 0.75 + refit, 8 steps of 4 x 128 per block, 2,048 held-out tokens): refit alone
  1.6886 bits/byte (PPL 69.1) -> nmse 1.6558 (63.6), cosine 1.6581 (64.0). A small margin at one
  short setting; bench/recovery_budget.py measures it inside the forge at real budgets.
- block-local share of a budget: 0 (ForgeConfig.blocklocal_share). bench/recovery_budget.py
  (SmolLM2-135M, 0.75 with the domain vocabulary, 10 min of recovery each, 2 cycles): KD alone
  1.1532 bits/byte, a 0.25 block-local share then KD 1.1641; the block-local phase itself raised
  the curve's bits/byte (cycle 1: 1.1552 -> 1.2181), as it did on Qwen2.5-Coder-0.5B at 0.65
  (0.9961 -> 1.0434, bench/qwen_forge.py). After a gentle cycle the refit is already close and
  5e-4 overshoots; a lower block-local rate is the next thing to measure.
Only SmolLM2-135M set these. Qwen2.5-Coder-0.5B (bench/qwen_forge.py) wants lower ones: at 1e-4
on labels, 4 steps of 4 x 128 took it from 0.9009 to 0.9394 bits/byte and its control ended at
0.9623, above the untuned base.
"""

from __future__ import annotations

KD_TEMPERATURE = 1.0
KD_ALPHA = 1.0  # logits only
WARMUP_FRACTION = 0.10

LEARNING_RATES = {("full", "distill"): 2e-4, ("full", "labels"): 1e-4,
                  ("lora", "distill"): 2e-4, ("lora", "labels"): 2e-4}
BLOCKLOCAL_LR = 5e-4
BLOCKLOCAL_LOSS = "nmse"


def default_lr(trainable: str, loss: str) -> float:
    """Peak learning rate for ``trainable`` (full | lora) trained on ``loss`` (distill | labels)."""
    return LEARNING_RATES[trainable, loss]


def warmup_steps(steps: int) -> int:
    return max(1, round(steps * WARMUP_FRACTION)) if steps > 1 else 0
