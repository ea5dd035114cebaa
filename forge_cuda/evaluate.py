"""Held-out NLL, perplexity and bits per byte on packed windows: the one evaluator every published row goes through.

Windows are packed without padding, so every next-token target counts; the
loss is summed per token and divided once, never averaged per batch.

Perplexity per token only compares models that share a tokenizer. Bits per byte
does not need that: ``bpb = total NLL / ln 2 / bytes``, where ``bytes`` is the
number of UTF-8 bytes the *predicted* tokens (targets 1..T-1 of each window)
stand for under the model's own tokenizer. Two models scored on the same
documents (forge_cuda.data.eval_set) are then comparable even when one has a
trimmed vocabulary. Special tokens (EOS between documents) count 0 bytes.
"""

from __future__ import annotations

import json
import math
import re
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: the character a byte-level BPE vocabulary uses for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    return any(p and p.get("type") == "ByteLevel" for p in parts)


def token_byte_lengths(tokenizer, size: int | None = None) -> torch.Tensor:
    """UTF-8 bytes each token id stands for (0 for special tokens), as a [max(size, len(tokenizer))] tensor.

    Byte-level BPE (GPT-2, SmolLM2, Qwen): one vocabulary character per byte. Otherwise
    (SentencePiece-style): ``<0xHH>`` byte tokens are 1 byte, ``▁`` is a space.
    """
    n = len(tokenizer)
    lengths = torch.zeros(max(n, size or 0), dtype=torch.long)
    alphabet = _byte_level_alphabet() if _is_byte_level(tokenizer) else None
    special = set(tokenizer.all_special_ids)
    for token, i in tokenizer.get_vocab().items():
        if i in special or i >= len(lengths):
            continue
        if alphabet is not None:
            lengths[i] = sum(1 if ch in alphabet else len(ch.encode("utf-8")) for ch in token)
        elif _BYTE_TOKEN.match(token):
            lengths[i] = 1
        else:
            lengths[i] = len(token.replace("▁", " ").encode("utf-8"))
    return lengths


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Total NLL in nats over the bytes it predicted, in bits per byte."""
    return nll_nats / math.log(2) / n_bytes if n_bytes else math.nan


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 8, desc: str = "eval",
               progress: bool = True, token_bytes: torch.Tensor | None = None) -> dict:
    """NLL and perplexity of ``model`` on [n, T] windows (targets: tokens 1..T-1); with ``token_bytes``
    (token_byte_lengths of the model's tokenizer) also the bytes predicted and bits per byte."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens, total_bytes = 0.0, 0, 0
    start = time.perf_counter()
    for i in tqdm(range(0, len(windows), batch_size), desc=desc, disable=not progress, leave=False):
        batch = windows[i:i + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        targets = batch[:, 1:]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        total_nll += nll.item()
        total_tokens += targets.numel()
        if token_bytes is not None:
            total_bytes += int(token_bytes[targets.cpu()].sum())
    model.train(was_training)
    loss = total_nll / total_tokens
    out = {"loss": loss, "ppl": math.exp(loss), "nll": total_nll, "tokens": total_tokens, "windows": len(windows),
           "seq_len": windows.shape[1], "seconds": time.perf_counter() - start}
    if token_bytes is not None:
        out.update(predicted_bytes=total_bytes, bpb=bits_per_byte(total_nll, total_bytes))
    return out
