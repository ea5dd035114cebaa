"""Domain data: documents split by a stable hash into train / calibration / eval, packed into windows.

Splitting by document (never by slicing one token stream) keeps the eval text
unseen by training and by importance scoring. Packed windows contain no
padding, so every target token counts in loss and perplexity.

The eval split is fixed as *text* (``Splits.eval_documents``: a prefix of the eval
documents in their stable order, the last one cut where the token budget ran out
with the tokenizer that chose it). A model with another tokenizer (a trimmed
vocabulary) tokenizes those same texts itself (``eval_windows``), so bits per byte
compare the two on the same documents.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from sentinel.errors import SentinelError

SPLITS = ("train", "calibration", "eval")
# Fractions of documents (by hash bucket); eval first so it never changes when the others do.
DEFAULT_FRACTIONS = {"eval": 0.10, "calibration": 0.05, "train": 0.85}
BUILTIN_DOMAINS = ("code", "docs")


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable identity: a relative path, a topic name, a line number
    text: str


def _stdlib_code() -> Iterator[Document]:
    """The Python standard library's own source: a real code corpus present on every machine."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or "__pycache__" in rel.parts:
            continue
        yield Document(rel.as_posix(), path.read_text(encoding="utf-8", errors="replace"))


def _pydoc_topics() -> Iterator[Document]:
    """English technical prose: the topics of Python's own help()."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(name, topics[name])


def _text_file(path: Path) -> Iterator[Document]:
    """A .txt file: each blank-line-separated block is one document."""
    blocks = [b.strip() for b in path.read_text(encoding="utf-8", errors="replace").split("\n\n")]
    for i, block in enumerate(b for b in blocks if b):
        yield Document(f"{path.name}#{i}", block)


def _jsonl_file(path: Path) -> Iterator[Document]:
    """A .jsonl file: one document per line, from its "text" (or "content") field."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SentinelError(f"{path}:{i + 1} is not valid JSON ({e.msg})") from None
        text = record.get("text", record.get("content")) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise SentinelError(f"{path}:{i + 1} has no string 'text' or 'content' field")
        yield Document(f"{path.name}:{i + 1}", text)


def _folder(path: Path) -> Iterator[Document]:
    """A folder: every text-like file below it is one document (jsonl files: one per line)."""
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if file.suffix == ".jsonl":
            yield from _jsonl_file(file)
        elif file.suffix in {".txt", ".md", ".rst", ".py", ".js", ".ts", ".c", ".h", ".cpp", ".rs", ".go",
                             ".java", ".json", ".yaml", ".yml", ".toml", ".html", ".css", ".sh"}:
            yield Document(file.relative_to(path).as_posix(), file.read_text(encoding="utf-8", errors="replace"))


def _hub_dataset(name: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise SentinelError(f"{name!r} is not a built-in domain ({', '.join(BUILTIN_DOMAINS)}) or a file/folder; "
                            "hub datasets need `pip install datasets` and network access") from None
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, missing, gated: all end the same way for the user
        raise SentinelError(f"could not load dataset {name!r} ({e.__class__.__name__})") from None
    column = "text" if "text" in ds.column_names else "content"
    for i, row in enumerate(ds):
        yield Document(f"{name}:{i}", row[column])


def documents(source: str) -> list[Document]:
    """All documents of a domain: "code", "docs", a .txt/.jsonl file, a folder, or a datasets name."""
    path = Path(source).expanduser()
    if source == "code":
        docs = list(_stdlib_code())
    elif source == "docs":
        docs = list(_pydoc_topics())
    elif path.is_dir():
        docs = list(_folder(path))
    elif path.is_file():
        if path.suffix == ".jsonl":
            docs = list(_jsonl_file(path))
        elif path.suffix in {".txt", ".md"}:
            docs = list(_text_file(path))
        else:
            raise SentinelError(f"{path}: data files must be .txt, .md or .jsonl")
    elif "/" in source and not source.startswith((".", "/", "~")):
        docs = list(_hub_dataset(source))
    else:
        raise SentinelError(f"data source {source!r} not found: use {', '.join(BUILTIN_DOMAINS)}, "
                            "a .txt/.jsonl file, a folder, or a datasets name")
    docs = [d for d in docs if d.text.strip()]
    if len(docs) < 3:
        raise SentinelError(f"data source {source!r} has {len(docs)} documents; at least 3 are needed "
                            "to split train / calibration / eval by document")
    return docs


def bucket(doc_id: str) -> float:
    """A stable number in [0, 1) per document: same split on every machine and run."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(doc_id: str, fractions: dict[str, float] = DEFAULT_FRACTIONS) -> str:
    b, edge = bucket(doc_id), 0.0
    for name in ("eval", "calibration", "train"):
        edge += fractions[name]
        if b < edge:
            return name
    return "train"


def split_documents(docs: Iterable[Document], fractions: dict[str, float] = DEFAULT_FRACTIONS
                    ) -> dict[str, list[Document]]:
    """Disjoint document lists per split, each in a stable (hash) order."""
    out: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for doc in docs:
        out[assign_split(doc.doc_id, fractions)].append(doc)
    for name in SPLITS:
        out[name].sort(key=lambda d: (bucket(d.doc_id + "#order"), d.doc_id))
    empty = [name for name in SPLITS if not out[name]]
    if empty:
        raise SentinelError(f"the {empty[0]} split got no documents; add more documents or change the fractions")
    return out


def pack(docs: list[Document], tokenizer, seq_len: int, max_tokens: int | None) -> tuple[torch.Tensor, dict]:
    """Tokenize documents in order, join them with EOS, and cut full windows (no padding, tail dropped)."""
    sep = tokenizer.eos_token_id
    budget = None if max_tokens is None else max(max_tokens, seq_len)
    stream: list[int] = []
    used = 0
    step = 8  # small batches: stop tokenizing soon after the budget is reached
    for start in range(0, len(docs), step):
        batch = docs[start:start + step]
        for ids in tokenizer([d.text for d in batch], add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            if sep is not None:
                stream.append(sep)
            used += 1
            if budget is not None and len(stream) >= budget:
                break
        if budget is not None and len(stream) >= budget:
            break
    if budget is not None:
        stream = stream[:budget]
    n = len(stream) // seq_len
    if n == 0:
        raise SentinelError(f"{len(stream)} tokens are fewer than one window of {seq_len}; lower --seq-len")
    windows = torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)
    return windows, {"documents": used, "tokens": n * seq_len, "windows": n}


@dataclass
class Splits:
    """Packed token windows of each split plus the counts that go into reports."""

    source: str
    seq_len: int
    train: torch.Tensor
    calibration: torch.Tensor
    eval: torch.Tensor
    stats: dict = field(default_factory=dict)
    eval_documents: list[Document] = field(default_factory=list)  # the exact eval texts (see eval_windows)


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer([text], add_special_tokens=False)["input_ids"][0])


def _cut(doc: Document, tokenizer, need: int) -> Document:
    """The shortest prefix of ``doc`` that has at least ``need`` tokens (binary search on characters)."""
    lo, hi = 1, len(doc.text)
    while lo < hi:
        mid = (lo + hi) // 2
        if _token_count(tokenizer, doc.text[:mid]) >= need:
            hi = mid
        else:
            lo = mid + 1
    return Document(doc.doc_id, doc.text[:lo])


def select_eval_documents(docs: list[Document], tokenizer, max_tokens: int | None) -> list[Document]:
    """The prefix of ``docs`` whose tokens (+ one EOS each) fill ``max_tokens``; the last one cut to fit.

    The result is text, so every tokenizer can be scored on exactly these documents.
    """
    if max_tokens is None:
        return list(docs)
    out, used = [], 0
    for doc in docs:
        need = max_tokens - used - 1  # one EOS after every document
        if need <= 0:
            break
        n = _token_count(tokenizer, doc.text)
        if n > need:
            out.append(_cut(doc, tokenizer, need))
            break
        out.append(doc)
        used += n + 1
    return out


def eval_windows(documents: list[Document], tokenizer, seq_len: int) -> tuple[torch.Tensor, dict]:
    """[n, seq_len] windows of these exact documents under ``tokenizer`` (all of them; the tail is dropped)."""
    windows, stats = pack(documents, tokenizer, seq_len, None)
    stats["text_bytes"] = sum(len(d.text.encode("utf-8")) for d in documents)
    return windows, stats


@dataclass
class EvalSet:
    """Held-out documents of one domain and their windows under one tokenizer (the out-of-domain row)."""

    source: str
    documents: list[Document]
    windows: torch.Tensor
    stats: dict


def eval_set(source: str, tokenizer, seq_len: int, max_tokens: int | None) -> EvalSet:
    """The eval split of ``source`` only, selected and packed exactly as build_splits does."""
    docs = select_eval_documents(split_documents(documents(source))["eval"], tokenizer, max_tokens)
    windows, stats = eval_windows(docs, tokenizer, seq_len)
    return EvalSet(source, docs, windows, stats)


def build_splits(source: str, tokenizer, seq_len: int = 256, seed: int = 0, max_docs: int | None = None,
                 max_tokens: dict[str, int | None] | None = None,
                 fractions: dict[str, float] = DEFAULT_FRACTIONS) -> Splits:
    """Split ``source`` by document and pack each split into [n, seq_len] windows.

    ``max_tokens`` caps each split (e.g. {"train": 200_000, "eval": 32_768}); the
    documents used are always a prefix of the split's stable order, so the same
    arguments give the same windows on every run. ``seed`` only shuffles the
    order of *training* windows.
    """
    docs = documents(source)
    if max_docs is not None:
        docs = sorted(docs, key=lambda d: bucket(d.doc_id + "#pick"))[:max_docs]
    by_split = split_documents(docs, fractions)
    caps = {name: None for name in SPLITS} | (max_tokens or {})
    packed, stats = {}, {"source": source, "seq_len": seq_len, "documents_total": len(docs)}
    for name in ("train", "calibration"):
        packed[name], stats[name] = pack(by_split[name], tokenizer, seq_len, caps[name])
    eval_docs = select_eval_documents(by_split["eval"], tokenizer, caps["eval"])
    packed["eval"], stats["eval"] = eval_windows(eval_docs, tokenizer, seq_len)
    for name in SPLITS:
        stats[name]["documents_available"] = len(by_split[name])
    order = torch.randperm(len(packed["train"]), generator=torch.Generator().manual_seed(seed))
    return Splits(source, seq_len, packed["train"][order], packed["calibration"], packed["eval"], stats,
                  eval_docs)
