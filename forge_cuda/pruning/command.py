"""`sentinel prune`: one-shot pruning without training — load, run the prune step, save with its report.

This is what FLAP/LLM-Pruner users try first, and the baseline a forge run must beat.
The result is a contract-format checkpoint plus ``prune_report.json``/``.md`` and the
importance scores (``importance/{scores,channel_scores}_<criterion>.{json,npy}``) for plots.
The model folder is already resolved (the CLI resolves names) and the options validated.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from forge_cuda.checkpoint import load_model, load_tokenizer, save_model
from forge_cuda.families import supported_model_types
from forge_cuda.pruning.calibration import calibration_batches
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.pruning.preflight import check_reachable, model_skeleton
from forge_cuda.pruning.step import prune_model
from forge_cuda.vocab.plan import plan_vocab
from forge_cuda.vocab.tokenizer_files import trim_hf_tokenizer
from forge_cuda.vocab.usage import domain_usage
from sentinel.atomic import check_output_dir, write_json
from sentinel.validate import check_model_folder


def report_markdown(report: dict) -> str:
    """A short human-readable companion to prune_report.json."""
    o, p, kv = report["options"], report["params"], report["kv_bytes_per_token"]["fp16"]
    q, ch = report["query_heads"], report["mlp_channels"]
    how = (f"target **{o['target_params']:g}** of the base parameters" if o.get("target_params") is not None
           else f"level {o['level']} (heads), {o.get('mlp_level', 0)} (MLP channels)")
    lines = [
        f"# Prune report: {report.get('model', '')}",
        "",
        f"criterion **{o['criterion']}**, {how}; removed {q['removed']}/{q['total']} query heads and "
        f"{ch['removed']}/{ch['total']} MLP channels; mode {o['mode']}, "
        f"calibration tokens {report['calibration_tokens']}",
        "",
        "| | before | after |",
        "|---|---:|---:|",
        f"| parameters | {p['before']:,} | {p['after']:,} |",
        f"| KV bytes/token (fp16) | {kv['before']:,} | {kv['after']:,} |",
        "",
        "| layer | query heads | KV heads | MLP channels |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['layer']} | {r['q_after']}/{r['q_before']} | {r['kv_after']}/{r['kv_before']} | "
              f"{r['mlp_after']}/{r['mlp_before']} |" for r in report["layers"]]
    return "\n".join(lines) + "\n"


def vocab_plan(model, tokenizer, domain: str, options: PruneOptions):
    """The token rows ``options.vocab`` lets go, counted on the domain's train + calibration documents
    (None for ``keep``). SentencePiece tokenizers cannot be trimmed: one error line naming ``--vocab keep``."""
    policy = options.vocab_policy
    if not policy.trims:
        return None
    rows = model.get_input_embeddings().weight.shape[0]
    return plan_vocab(model, tokenizer, domain_usage(domain, tokenizer, rows), policy)


def run_prune(model_name: str, source: str | Path, out: str | Path, options: PruneOptions, domain: str = "code",
              calib_windows: int = 32, seq_len: int = 256, force: bool = False,
              dtype: torch.dtype = torch.float32, progress: bool = True) -> dict:
    """``sentinel prune`` on the resolved folder ``source``: check, load, prune, save checkpoint + report atomically.

    ``model_name`` is what the user typed (recorded in the report).
    """
    out, source = Path(out), Path(source)
    start = time.perf_counter()
    check_model_folder(source, supported_model_types())
    check_output_dir(out, inputs=[source], force=force)  # never replaces its own input, even with --force
    check_reachable(model_skeleton(source), options)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(source, dtype=dtype, device=device)
    tokenizer = load_tokenizer(source)
    loaded = time.perf_counter()
    batches = [] if options.criterion in ("magnitude", "random") and not options.refit else calibration_batches(
        tokenizer, domain, calib_windows, seq_len, options.seed, options.batch_size)
    vocab = vocab_plan(model, tokenizer, domain, options)
    report, scores = prune_model(model, batches, options, progress=progress, vocab=vocab)
    if vocab is not None:
        tokenizer = trim_hf_tokenizer(tokenizer, vocab.kept)
    report = {"model": model_name, "source": str(source), "domain": domain if batches else None,
              "calibration_windows": len(batches and torch.cat(batches)), "seq_len": seq_len,
              "device": device, **report}
    report["seconds"] = {"load": round(loaded - start, 3), **report["seconds"]}

    def extra(tmp: Path) -> None:
        for kind_scores in scores.values():
            kind_scores.save(tmp / "importance")
        write_json(tmp / "prune_report.json", report)
        (tmp / "prune_report.md").write_text(report_markdown(report))

    save_model(model, out, tokenizer, force=force, extra=extra)
    report["seconds"]["total"] = round(time.perf_counter() - start, 3)
    write_json(out / "prune_report.json", report)
    return report
