"""How often the domain uses each token id: the evidence a vocabulary trim stands on.

Counted over the documents of the train and calibration splits (the same split by
document hash that `forge_cuda.data` uses), never the eval split, so held-out
scores measure what the trim costs on text it did not see.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from forge_cuda.data import Document, bucket, documents, split_documents

COUNTED_SPLITS = ("train", "calibration")


def count_ids(id_lists: Iterable[Iterable[int]], vocab_size: int) -> np.ndarray:
    """Occurrences of every id in ``0..vocab_size-1`` over token id sequences (int64)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids in id_lists:
        arr = np.asarray(list(ids) if not hasattr(ids, "__len__") else ids, dtype=np.int64).ravel()
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(f"token id {int(arr.max())} outside the model's {vocab_size} rows")
        counts += np.bincount(arr, minlength=vocab_size)
    return counts


def count_documents(docs: Iterable[Document], hf_tokenizer, vocab_size: int, batch: int = 64) -> np.ndarray:
    """Token counts of the documents as the forge tokenizes them (no special tokens; one EOS each)."""
    docs = list(docs)
    tok = hf_tokenizer.backend_tokenizer
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(docs), batch):
        encoded = tok.encode_batch_fast([d.text for d in docs[start:start + batch]], add_special_tokens=False)
        counts += count_ids((e.ids for e in encoded), vocab_size)
    eos = hf_tokenizer.eos_token_id
    if eos is not None and eos < vocab_size:
        counts[eos] += len(docs)  # `data.pack` joins documents with EOS
    return counts


def counted_documents(source: str, max_docs: int | None = None) -> list[Document]:
    """The train + calibration documents of a domain, chosen as ``data.build_splits`` chooses them."""
    docs = documents(source)
    if max_docs is not None:  # mirrors build_splits' max_docs pick
        docs = sorted(docs, key=lambda d: bucket(d.doc_id + "#pick"))[:max_docs]
    by_split = split_documents(docs)
    return [d for name in COUNTED_SPLITS for d in by_split[name]]


def domain_usage(source: str, hf_tokenizer, vocab_size: int, max_docs: int | None = None) -> np.ndarray:
    """Token id counts over a domain's train + calibration documents."""
    return count_documents(counted_documents(source, max_docs), hf_tokenizer, vocab_size)
