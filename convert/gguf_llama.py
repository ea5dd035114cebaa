"""llama.cpp in process, to read back what ``--to gguf`` wrote: logits, greedy tokens, timings.

The library is cyllama's manylinux wheel (``pip install cyllama==0.2.18``): a
prebuilt CPU llama.cpp (b9190) linked into a Cython module, no compiler and no
network needed, importable on glibc 2.17+. Two quirks of that release are
worked around here: its logits getters read ``model.n_vocab``, which its model
class lacks (a subclass provides it), and llama.cpp logs to stderr unless told
not to. A file llama.cpp cannot load becomes one SentinelError line.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

from sentinel.errors import SentinelError

GGUF_MAGIC = b"GGUF"
GGML_TYPE_F32 = 0


def _cyllama():
    try:
        import cyllama.llama.llama_cpp as cp
    except ImportError as e:
        raise SentinelError(f"reading GGUF files needs llama.cpp's Python build ({e}); "
                            "install it with `pip install cyllama==0.2.18`") from None
    cp.disable_logging()
    return cp


def check_gguf(path: Path) -> None:
    """One line for a missing, foreign or truncated file, before llama.cpp sees it."""
    import gguf

    if not path.is_file():
        raise SentinelError(f"{path} does not exist or is not a file")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise SentinelError(f"{path} is not a GGUF file (no GGUF magic)")
    try:
        reader = gguf.GGUFReader(path)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError, struct.error) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SentinelError(f"{path} is a damaged GGUF file ({first})") from None
    if end > path.stat().st_size:
        raise SentinelError(f"{path} is truncated: its tensors end at byte {end}, the file has {path.stat().st_size}")


class LlamaCpp:
    """One loaded GGUF model with a context of ``n_ctx`` tokens."""

    def __init__(self, path: str | os.PathLike, n_ctx: int = 512, n_threads: int | None = None,
                 exact: bool = False):
        cp = _cyllama()
        self.path = Path(path)
        check_gguf(self.path)

        class Model(cp.LlamaModel):
            @property
            def n_vocab(self) -> int:  # cyllama 0.2.18's get_logits reads this attribute
                return self.get_vocab().n_vocab

        try:
            self.model = Model(str(self.path), cp.LlamaModelParams())
        except Exception as e:  # noqa: BLE001 - llama.cpp reports every load failure the same way
            raise SentinelError(f"llama.cpp cannot load {self.path} ({e})") from None
        self.vocab = self.model.get_vocab()
        params = cp.LlamaContextParams()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_threads = params.n_threads_batch = n_threads or os.cpu_count() or 1
        params.no_perf = False
        if exact:  # f16 KV cache or flash attention (f16 Q) alone move fp32 logits by ~5e-4; this: ~5e-7
            params.type_k = params.type_v = GGML_TYPE_F32
            params.flash_attn_type = 0
        self._cp, self._params = cp, params
        self.ctx = cp.LlamaContext(self.model, params)
        self.n_ctx = n_ctx
        self._sampler = None

    @property
    def n_vocab(self) -> int:
        return self.vocab.n_vocab

    def meta(self, key: str) -> str | None:
        value = self.model.meta_val_str(key)
        return value if value else None

    def reset(self) -> None:
        self.ctx.kv_cache_clear()

    def eval(self, tokens: list[int], start: int = 0, all_logits: bool = False) -> np.ndarray:
        """Decode ``tokens`` at positions ``start``...; logits of every token or only the last one."""
        if start + len(tokens) > self.n_ctx:
            raise SentinelError(f"{start + len(tokens)} tokens exceed the llama.cpp context of {self.n_ctx}")
        self._decode(tokens, start, all_logits)
        rows = range(len(tokens)) if all_logits else [len(tokens) - 1]
        return np.array([self.ctx.get_logits_ith(i) for i in rows], dtype=np.float32)

    def _decode(self, tokens: list[int], start: int, all_logits: bool) -> None:
        batch = self._cp.LlamaBatch(n_tokens=len(tokens), embd=0, n_seq_max=1)
        for i, t in enumerate(tokens):
            batch.add(int(t), start + i, [0], all_logits or i == len(tokens) - 1)
        self.ctx.decode(batch)

    def timed_greedy(self, tokens: list[int], n: int) -> tuple[list[int], float, float]:
        """Greedy tokens with the argmax inside llama.cpp (no logits copied to Python), for timing:
        (tokens, prefill seconds, decode seconds)."""
        if len(tokens) + n > self.n_ctx:
            raise SentinelError(f"{len(tokens) + n} tokens exceed the llama.cpp context of {self.n_ctx}")
        if self._sampler is None:
            self._sampler = self._cp.LlamaSampler()
            self._sampler.add_greedy()
        self.reset()
        t0 = time.perf_counter()
        self._decode(tokens, 0, False)
        t1 = time.perf_counter()
        out: list[int] = []
        for i in range(n):
            out.append(int(self._sampler.sample(self.ctx, -1)))
            self._decode([out[-1]], len(tokens) + i, False)
        return out, t1 - t0, time.perf_counter() - t1

    def logits(self, tokens: list[int]) -> np.ndarray:
        """[len(tokens), n_vocab] logits of one prefill from an empty cache."""
        self.reset()
        return self.eval(tokens, all_logits=True)

    def greedy(self, tokens: list[int], n: int, stop_at_eog: bool = False) -> list[int]:
        """``n`` greedy (argmax) tokens after ``tokens``, decoding one token at a time."""
        self.reset()
        last = self.eval(tokens)[-1]
        out: list[int] = []
        for _ in range(n):
            t = int(np.argmax(last))
            if stop_at_eog and self.vocab.is_eog(t):
                break
            out.append(t)
            last = self.eval([t], start=len(tokens) + len(out) - 1)[-1]
        return out

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return list(self.vocab.tokenize(text, add_special=add_special, parse_special=parse_special))

    def detokenize(self, tokens: list[int]) -> str:
        return self.vocab.detokenize(list(tokens), False, True) if tokens else ""

    def close(self) -> None:
        for name in ("_sampler", "ctx", "model"):
            obj = getattr(self, name, None)
            if obj is not None and hasattr(obj, "close"):
                obj.close()
            setattr(self, name, None)

    def __enter__(self) -> "LlamaCpp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
