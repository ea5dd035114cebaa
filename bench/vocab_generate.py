"""A vocabulary-only prune answers a coding prompt with the same greedy text in torch, MLX and llama.cpp.

Issue 18's acceptance: the trimmed model answers "Write a Python function that reverses a
string." with code in ``sentinel generate`` and in llama.cpp (GGUF), with the same greedy
text as torch. Everything goes through the product's own CLI:

1. ``sentinel prune MODEL --vocab domain --target-params 1.0 --criterion magnitude --no-refit``
   (no calibration pass; a target of 1.0 lets only the token rows the domain never uses go,
   checked in prune_report.json: no head or channel removed);
2. torch (``forge_cuda.checkpoint.load_model``, fp32) greedy-decodes N tokens by argmax with
   its KV cache, from the chat-templated prompt (add_generation_prompt), for the trimmed
   folder and for the base model (did the trim change the reply?);
3. ``sentinel convert --to mlx`` per ``--mlx-dtypes``: ``sentinel generate`` (temp 0) gives the
   product's text, the same folder in process gives the token ids;
4. ``sentinel convert --to gguf`` per ``--gguf-outtypes``: llama.cpp (cyllama, f32 KV cache)
   argmax-decodes from the same prompt ids.

Each reply is compared with torch's (text, ids, first differing token) and checked for code.

    python bench/vocab_generate.py [--model qwen2.5-coder-0.5b] [--tokens 64]
    # -> bench/results/vocab_generate_<model>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, run_facts, sentinel  # noqa: E402

PROMPT = "Write a Python function that reverses a string."


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token (the shorter length if one is a prefix of the other)."""
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return i if i is not None or len(a) == len(b) else min(len(a), len(b))


def has_code(text: str) -> bool:
    return "def " in text and "return" in text


def torch_greedy(folder: Path, n: int) -> dict:
    """Argmax decode with the KV cache (generate() would apply generation_config's sampling knobs)."""
    import torch

    from forge_cuda.checkpoint import load_model, load_tokenizer, param_count

    t0 = time.perf_counter()
    model, tok = load_model(folder, dtype=torch.float32).eval(), load_tokenizer(folder)
    prompt = list(tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                          return_dict=False))
    eos = set(_ids(model.config.eos_token_id) + _ids(model.generation_config.eos_token_id))
    loaded = time.perf_counter()
    ids, past, feed = [], None, torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            out = model(feed, cache=past, use_cache=True)
            past, t = out.cache, int(out.logits[0, -1].argmax())
            if t in eos:
                break
            ids.append(t)
            feed = torch.tensor([[t]])
    return {"model": model, "tokenizer": tok, "prompt": prompt, "eos": eos, "ids": ids,
            "params": param_count(model), "seconds": {"load": round(loaded - t0, 2),
                                                      "greedy": round(time.perf_counter() - loaded, 2)}}


def _ids(value) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)


def compare(name: str, ids: list[int], text: str, ref: dict, extra: dict) -> dict:
    row = {"ids": ids, "text": text, "tokens": len(ids), "ids_equal_torch": ids == ref["ids"],
           "text_equal_torch": text == ref["text"], "first_difference": first_difference(ids, ref["ids"]),
           "has_code": has_code(text), **extra}
    print(f"{name}: {len(ids)} tokens, text equal torch {row['text_equal_torch']}, "
          f"first difference {row['first_difference']}, code {row['has_code']}", flush=True)
    return row


def mlx_rows(vocab: Path, work: Path, dtypes: list[str], n: int, ref: dict) -> dict:
    """Per dtype: ``sentinel generate``'s text and the in-process token ids of the same folder."""
    from mlx_lm.generate import stream_generate

    import runtime_mlx

    rows = {}
    for dtype in dtypes:
        folder = work / f"mlx-{dtype}"
        convert_s, _ = sentinel("convert", str(vocab), "--to", "mlx", "--dtype", dtype, "--out", str(folder))
        generate_s, stdout = sentinel("generate", str(folder), "-p", PROMPT, "--max-tokens", str(n), "--temp", "0")
        cli_text = stdout[:-1] if stdout.endswith("\n") else stdout  # click.echo() ends the reply with one
        t0 = time.perf_counter()
        model, tok = runtime_mlx.load(folder)
        ids = [r.token for r in stream_generate(model, tok, ref["prompt"], max_tokens=n)]
        while ids and ids[-1] in ref["eos"]:  # mlx-lm's last response carries the EOS token
            ids.pop()
        seconds = {"convert": round(convert_s, 2), "sentinel_generate": round(generate_s, 2),
                   "in_process_greedy": round(time.perf_counter() - t0, 2)}
        rows[dtype] = compare(f"mlx {dtype}", ids, cli_text, ref, {
            "in_process_text": ref["decode"](ids), "cli_text_equals_in_process": cli_text == ref["decode"](ids),
            "seconds": seconds})
        del model
    return rows


def gguf_rows(vocab: Path, work: Path, outtypes: list[str], n: int, ref: dict) -> dict:
    """Per GGUF type: llama.cpp's argmax tokens from the same prompt ids, and its own tokenization check."""
    from convert.gguf_llama import LlamaCpp

    chat_text = ref["tokenizer"].decode(ref["prompt"])
    rows = {}
    for outtype in outtypes:
        path = work / f"vocab-{outtype}.gguf"
        convert_s, _ = sentinel("convert", str(vocab), "--to", "gguf", "--outtype", outtype, "--out", str(path))
        t0 = time.perf_counter()
        with LlamaCpp(path, n_ctx=len(ref["prompt"]) + n + 8, exact=True) as llm:
            ids = llm.greedy(ref["prompt"], n, stop_at_eog=True)
            own = {"detokenized": llm.detokenize(ids),
                   "prompt_tokenization_equal": llm.tokenize(chat_text, add_special=False, parse_special=True)
                   == ref["prompt"], "n_vocab": llm.n_vocab, "architecture": llm.meta("general.architecture")}
        rows[outtype] = compare(f"gguf {outtype}", ids, ref["decode"](ids), ref, {
            "llama_cpp": own, "gguf_bytes": path.stat().st_size,
            "seconds": {"convert": round(convert_s, 2), "greedy": round(time.perf_counter() - t0, 2)}})
        path.unlink()
    return rows


def prune(model: str, work: Path, domain: str) -> tuple[Path, dict, float]:
    from sentinel.atomic import read_json

    vocab = work / "vocab"
    seconds, _ = sentinel("prune", model, "--vocab", "domain", "--target-params", "1.0", "--criterion", "magnitude",
                          "--no-refit", "--domain", domain, "--out", str(vocab))
    return vocab, read_json(vocab / "prune_report.json"), seconds


def base_row(base: dict, ref: dict, vocab: Path) -> dict:
    """The base model's reply beside the trimmed one: where the text parts, and the first token it
    picks that the trim removed (a trimmed model cannot pick it; its logits at kept ids are unchanged)."""
    from sentinel.atomic import read_json
    from sentinel.layout import read_layout

    kept = set(read_layout(read_json(vocab / "config.json")).vocab_ids or ())
    text = base["tokenizer"].decode(base["ids"], skip_special_tokens=True)
    removed = next((i for i, t in enumerate(base["ids"]) if kept and t not in kept), None)
    first = None if removed is None else {"index": removed, "id": base["ids"][removed],
                                          "piece": base["tokenizer"].decode([base["ids"][removed]])}
    return {"ids": base["ids"], "text": text, "tokens": len(base["ids"]), "params": base["params"],
            "text_equal_trimmed": text == ref["text"], "first_text_difference": first_difference(
                [ord(c) for c in text], [ord(c) for c in ref["text"]]), "first_removed_token": first,
            "seconds": base["seconds"]}


def prune_facts(report: dict) -> dict:
    p = report["params"]
    return {"params_before": p["before"], "params_after": p["after"], "params_kept": p["after"] / p["before"],
            "params_removed_fraction": 1 - p["after"] / p["before"], "vocab": report.get("vocab"),
            "query_heads_removed": report["query_heads"]["removed"],
            "mlp_channels_removed": report["mlp_channels"]["removed"], "options": report["options"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="embedded model name or HF folder")
    ap.add_argument("--domain", default="code", help="domain whose train + calibration text picks the tokens")
    ap.add_argument("--tokens", type=int, default=256,
                    help="greedy tokens generated, fewer if EOS comes first (256: `sentinel generate`'s default; "
                         "64 stops Qwen's reply inside the function, before its return)")
    ap.add_argument("--mlx-dtypes", default="float16,float32", help="comma-separated `convert --dtype` values")
    ap.add_argument("--gguf-outtypes", default="f16,f32", help="comma-separated `convert --outtype` values")
    ap.add_argument("--min-removed", type=float, default=0.30, help="goal: fraction of parameters the trim removes")
    ap.add_argument("--work", type=Path, default=None, help="keep the pruned and converted models here")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default bench/results/vocab_generate_<model>.json)")
    args = ap.parse_args()

    from sentinel.atomic import write_json
    from sentinel.cli.resolve import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        vocab, report, prune_s = prune(args.model, work, args.domain)
        ref = torch_greedy(vocab, args.tokens)
        tok = ref["tokenizer"]
        ref["decode"] = lambda ids: tok.decode(ids, skip_special_tokens=True)
        ref["text"] = ref["decode"](ref["ids"])
        del ref["model"]
        base = torch_greedy(resolve_model(args.model), args.tokens)  # what the trim changed in the reply
        del base["model"]
        print(f"torch: {len(ref['ids'])} tokens, code {has_code(ref['text'])}: {ref['text'][:200]!r}", flush=True)
        facts = prune_facts(report)
        result = {**run_facts(), "model": args.model, "prompt": PROMPT, "domain": args.domain,
                  "max_new_tokens": args.tokens, "prompt_tokens": len(ref["prompt"]), **facts,
                  "params_torch_loaded": ref["params"], "kept_tokens": len(tok),
                  "seconds": {"prune": round(prune_s, 2), **{f"torch_{k}": v for k, v in ref["seconds"].items()}},
                  "torch": {"ids": ref["ids"], "text": ref["text"], "tokens": len(ref["ids"]),
                            "has_code": has_code(ref["text"])},
                  "base_torch": base_row(base, ref, vocab)}
        result["mlx"] = mlx_rows(vocab, work, args.mlx_dtypes.split(","), args.tokens, ref)
        result["gguf"] = gguf_rows(vocab, work, args.gguf_outtypes.split(","), args.tokens, ref)
    rows = [*result["mlx"].values(), *result["gguf"].values()]
    result["goals"] = {"min_removed_fraction": args.min_removed, "only_vocab_removed": True,
                       "all_text_equal_torch": True, "all_have_code": True}
    result["ok"] = (facts["params_removed_fraction"] >= args.min_removed and facts["vocab"] is not None
                    and facts["query_heads_removed"] == 0 and facts["mlp_channels_removed"] == 0
                    and result["torch"]["has_code"] and all(r["text_equal_torch"] and r["has_code"] for r in rows))
    out = args.out or RESULTS / f"vocab_generate_{Path(args.model).name}.json"
    write_json(out, result)
    equal = {f"mlx {k}": v["text_equal_torch"] for k, v in result["mlx"].items()}
    equal.update({f"gguf {k}": v["text_equal_torch"] for k, v in result["gguf"].items()})
    print(f"{args.model}: params {facts['params_before']:,} -> {facts['params_after']:,} "
          f"(-{facts['params_removed_fraction']:.1%}), kept tokens {len(tok):,}; text equal torch {equal}; "
          f"code {result['torch']['has_code']}; base model's reply equal {result['base_torch']['text_equal_trimmed']} "
          f"(first removed token it picks: {result['base_torch']['first_removed_token']}); "
          f"ok {result['ok']}; wrote {out}")


if __name__ == "__main__":
    main()
