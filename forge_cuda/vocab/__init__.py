"""Domain vocabulary: the embedding and LM head keep only the tokens the domain uses.

usage (count ids over train + calibration), policy (keep / domain / coverage), bpe
(closure and tokenizer trimming with the `tokenizers` library), tokenizer_files
(ids that always stay, the trimmed tokenizer folder), surgery (embedding/head rows),
plan (one decision joining them).
"""

from importlib import import_module

_HOMES = {"VocabPlan": "plan", "plan_vocab": "plan", "VocabPolicy": "policy", "parse_vocab_policy": "policy",
          "restrict_vocab": "surgery", "row_params": "surgery", "save_trimmed_tokenizer": "tokenizer_files",
          "trim_hf_tokenizer": "tokenizer_files", "count_ids": "usage", "domain_usage": "usage"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """Names load on first use, so the CLI can check a policy (policy.py: numpy only) without importing torch."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
