"""What one tokenizer makes of a forge run's documents: windows, eval windows, byte table, curve subset.

Once the forged track's vocabulary is trimmed (``--vocab``), it reads the same
documents through its own, smaller tokenizer while the control and the teacher's
stage keep the base one. Both score the *same* held-out documents, so their bits
per byte compare; under ``--vocab domain`` every training token survives, so the
forged track's training windows are the control's, renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from forge_cuda.data import EvalSet, Splits, build_splits, eval_set, eval_windows
from forge_cuda.evaluate import token_byte_lengths


@dataclass
class TrackData:
    tokenizer: object
    splits: Splits
    token_bytes: torch.Tensor
    curve_windows: torch.Tensor
    ood: EvalSet | None


def _caps(cfg) -> dict:
    return {"train": cfg.train_tokens, "eval": cfg.eval_tokens, "calibration": cfg.calib_windows * cfg.seq_len}


def _finish(cfg, tokenizer, splits: Splits, ood: EvalSet | None) -> TrackData:
    curve = splits.eval[:max(1, cfg.curve_eval_tokens // cfg.seq_len)]
    return TrackData(tokenizer, splits, token_byte_lengths(tokenizer), curve, ood)


def base_data(cfg, tokenizer) -> TrackData:
    """The run's splits under the base tokenizer, plus the out-of-domain set (``cfg.ood_domain``)."""
    splits = build_splits(cfg.domain, tokenizer, cfg.seq_len, seed=cfg.seed, max_tokens=_caps(cfg))
    source = cfg.ood_domain if cfg.ood_domain not in (None, cfg.domain) else None
    ood = eval_set(source, tokenizer, cfg.seq_len, cfg.ood_eval_tokens) if source else None
    return _finish(cfg, tokenizer, splits, ood)


def retokenized(cfg, base: TrackData, tokenizer) -> TrackData:
    """``base``'s documents under another tokenizer: the same train/calibration documents (split by
    document), and exactly the same eval and out-of-domain documents."""
    splits = build_splits(cfg.domain, tokenizer, cfg.seq_len, seed=cfg.seed, max_tokens=_caps(cfg))
    windows, stats = eval_windows(base.splits.eval_documents, tokenizer, cfg.seq_len)
    splits = replace(splits, eval=windows, eval_documents=base.splits.eval_documents,
                     stats={**splits.stats, "eval": {**splits.stats["eval"], **stats}})
    ood = None
    if base.ood is not None:
        ood_windows, ood_stats = eval_windows(base.ood.documents, tokenizer, cfg.seq_len)
        ood = EvalSet(base.ood.source, base.ood.documents, ood_windows, ood_stats)
    return _finish(cfg, tokenizer, splits, ood)
