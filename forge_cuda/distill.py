"""Logit distillation: the pruned student learns the unpruned teacher's next-token distribution.

Minitron (arXiv 2407.14679) recovers pruned models by matching the parent's logits
with a KL loss rather than training on labels: the teacher's full distribution
carries far more signal per token than one label. ``distill_loss`` is
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)`` per token;
``T^2`` keeps gradient sizes comparable across temperatures (Hinton et al. 2015).
With ``top_k`` the teacher is reduced to its k most likely tokens (renormalised),
which is what a cache of teacher logits would hold for a large vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least fp32 (half-precision logits lose the small differences KL is made of)."""
    return x if x.dtype == torch.float64 else x.float()


def teacher_targets(teacher_logits: torch.Tensor, temperature: float = 1.0,
                    top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher log-probabilities at temperature T: full [.., V], or top-k values with their token ids."""
    logits = _wide(teacher_logits) / temperature
    if top_k is None:
        return F.log_softmax(logits, dim=-1), None
    values, ids = logits.topk(top_k, dim=-1)
    return F.log_softmax(values, dim=-1), ids


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                 alpha: float = 1.0, label_loss: torch.Tensor | None = None,
                 top_k: int | None = None) -> torch.Tensor:
    """Mean per-token KL(teacher || student) at temperature T, optionally mixed with the label loss.

    Zero exactly when the student's logits equal the teacher's (up to a per-token constant).
    """
    t_logp, ids = teacher_targets(teacher_logits, temperature, top_k)
    s_logp = F.log_softmax(_wide(student_logits) / temperature, dim=-1)
    if ids is not None:  # the student's distribution restricted to the teacher's top-k, renormalised
        s_logp = F.log_softmax(s_logp.gather(-1, ids), dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean() * temperature ** 2
    if alpha >= 1.0 or label_loss is None:
        return kl
    return alpha * kl + (1.0 - alpha) * label_loss
