"""Vocabulary alone (one-shot, no training): how much a domain vocabulary removes and what it costs.

Every row starts from the base model, keeps the token rows a ``--vocab`` policy keeps
(ids the domain's train + calibration documents use, plus BPE closure, byte tokens,
specials and the chat template), trims the tokenizer to match, and scores held-out
bits per byte on the *same* documents as the base (each model with its own
tokenizer): the domain's eval split and an out-of-domain one.

    python bench/vocab_only.py [--model smollm2-135m] [--policies domain,0.999] [--eval-tokens 16384]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts  # noqa: E402


def score(model, tokenizer, docs, seq_len: int) -> dict:
    """Held-out NLL per byte of ``docs`` under the model's own tokenizer."""
    from forge_cuda.data import eval_windows
    from forge_cuda.evaluate import perplexity, token_byte_lengths

    windows, stats = eval_windows(docs, tokenizer, seq_len)
    out = perplexity(model, windows, progress=False, token_bytes=token_byte_lengths(tokenizer, len(tokenizer)))
    return {"bpb": out["bpb"], "ppl": out["ppl"], "tokens": out["tokens"], "bytes": out["predicted_bytes"]}


def row(name: str, model, tokenizer, eval_docs: dict, seq_len: int, extra: dict) -> dict:
    from forge_cuda.checkpoint import param_count

    params = param_count(model)
    out = {"row": name, "params": params, "bytes_fp16": 2 * params, "kept_tokens": len(tokenizer), **extra}
    for domain, docs in eval_docs.items():
        out[domain] = score(model, tokenizer, docs, seq_len)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="embedded model name or HF folder")
    ap.add_argument("--domain", default="code", help="domain whose train + calibration text picks the tokens")
    ap.add_argument("--ood", default="docs", help="out-of-domain eval source")
    ap.add_argument("--policies", default="domain,0.9999,0.999", help="comma-separated --vocab policies")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=16384, help="held-out tokens per domain (base tokenizer)")
    ap.add_argument("--max-docs", type=int, default=None, help="cap the domain's documents (tiny runs)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/vocab_only_<model>.json)")
    args = ap.parse_args()

    from forge_cuda.checkpoint import load_model, load_tokenizer
    from forge_cuda.data import eval_set
    from forge_cuda.vocab import domain_usage, parse_vocab_policy, plan_vocab, restrict_vocab, trim_hf_tokenizer
    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    src = resolve_model(args.model)
    base, tok = load_model(src), load_tokenizer(src)
    rows = base.get_input_embeddings().weight.shape[0]
    eval_docs = {d: eval_set(d, tok, args.seq_len, args.eval_tokens).documents for d in (args.domain, args.ood)}
    start = time.perf_counter()
    counts = domain_usage(args.domain, tok, rows, args.max_docs)
    result = {**run_facts(), "model": f"{args.model} (fp32, torch CPU)", "domain": args.domain, "ood": args.ood,
              "settings": {k: getattr(args, k) for k in ("policies", "seq_len", "eval_tokens", "max_docs")},
              "counted_tokens": int(counts.sum()), "counting_seconds": round(time.perf_counter() - start, 1),
              "rows": [row("base", base, tok, eval_docs, args.seq_len, {"policy": "keep"})]}
    for policy in args.policies.split(","):
        model = copy.deepcopy(base)
        plan = plan_vocab(model, tok, counts, parse_vocab_policy(policy))
        restrict_vocab(model, plan.kept)
        layout_bytes = len(json.dumps(model.config.to_dict()["sentinel_layout"], indent=2))
        result["rows"].append(row(f"vocab {policy}", model, trim_hf_tokenizer(tok, plan.kept), eval_docs,
                                  args.seq_len, {**plan.to_dict(), "layout_json_bytes": layout_bytes}))
        del model
    out = args.out or RESULTS / f"vocab_only_{Path(args.model).name}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
