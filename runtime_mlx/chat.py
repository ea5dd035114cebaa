"""Multi-turn chat on mlx-lm's generator that never re-prefills the history.

Each turn renders the whole conversation with the model's chat template, keeps
the longest prefix already in the KV cache (trimming what diverged, e.g. a reply
cut off by max_tokens that the template closes differently), and prefills only
the rest. Sampling, the KV cache and streaming detokenization are mlx-lm's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional


@dataclass
class Sampling:
    """The sampling flags shared by ``sentinel chat`` and ``sentinel generate``."""

    temp: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: Optional[float] = None
    max_tokens: int = 256
    seed: Optional[int] = None

    def generate_kwargs(self) -> dict:
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        return {"sampler": make_sampler(self.temp, self.top_p, self.min_p, top_k=self.top_k),
                "logits_processors": make_logits_processors(repetition_penalty=self.repetition_penalty),
                "max_tokens": self.max_tokens}


@dataclass
class TurnStats:
    """What /stats shows about the last turn."""

    prompt_tokens: int = 0  # newly prefilled, not the whole history
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    peak_memory_gb: float = 0.0
    cached_tokens: int = 0
    finish_reason: Optional[str] = None
    compute_dtype: str = ""  # what the matmuls ran in (float32 on a CPU backend by default)

    def line(self) -> str:
        line = (f"prompt: {self.prompt_tokens} new tokens, {self.prompt_tps:.1f} tok/s | "
                f"decode: {self.generation_tokens} tokens, {self.generation_tps:.1f} tok/s | "
                f"peak memory: {self.peak_memory_gb:.3f} GB")
        line += f" | cache: {self.cached_tokens} tokens" if self.cached_tokens else ""
        return line + (f" | compute: {self.compute_dtype}" if self.compute_dtype else "")


@dataclass
class ChatSession:
    model: object
    tokenizer: object
    system: Optional[str] = None
    sampling: Sampling = field(default_factory=Sampling)
    max_kv_size: Optional[int] = None
    context: Optional[int] = None  # the model's context; longer conversations are refused or truncated
    long_prompt: str = "refuse"  # or "truncate": drop the oldest turns until the conversation fits
    compute_dtype: str = ""

    def __post_init__(self):
        if self.sampling.seed is not None:
            import mlx.core as mx

            mx.random.seed(self.sampling.seed)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation and empty the KV cache."""
        from mlx_lm.models.cache import make_prompt_cache

        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.cache = make_prompt_cache(self.model, self.max_kv_size)
        self.cached: list[int] = []  # the tokens whose keys/values the cache holds
        self.stats = TurnStats(compute_dtype=self.compute_dtype)

    @property
    def cache_offset(self) -> int:
        return self.cache[0].offset

    def _render(self) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            return list(self.tokenizer.apply_chat_template(self.messages, add_generation_prompt=True))
        text = "\n".join(m["content"] for m in self.messages) + "\n"  # base models: plain transcript
        return list(self.tokenizer.encode(text))

    def _fit(self) -> list[int]:
        """The rendered conversation, within the context (a rotating cache has no bound): drop the
        oldest turns (truncate) or refuse the new message (the conversation stays as it was)."""
        from sentinel.errors import SentinelError

        prompt = self._render()
        if self.context is None or self.max_kv_size is not None:
            return prompt
        first = 1 if self.system else 0
        while len(prompt) >= self.context and self.long_prompt == "truncate" and len(self.messages) > first + 1:
            del self.messages[first: first + 2]  # the oldest user message and its reply
            prompt = self._render()
        if len(prompt) >= self.context:
            self.messages.pop()
            raise SentinelError(f"the conversation is {len(prompt)} tokens, the model's context is {self.context}: "
                                + ("this message alone is too long" if self.long_prompt == "truncate"
                                   else "/reset, or start chat with --long-prompt truncate"))
        return prompt

    def _new_tokens(self, prompt: list[int]) -> list[int]:
        """Trim the cache to the part of ``prompt`` it already holds; return what must be prefilled."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        keep = 0
        for a, b in zip(self.cached, prompt):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)  # the generator needs at least one token to start from
        if keep < len(self.cached):
            if not can_trim_prompt_cache(self.cache):
                self.reset_cache_only()
                keep = 0
            else:
                trim_prompt_cache(self.cache, len(self.cached) - keep)
        self.cached = prompt[:keep]
        return prompt[keep:]

    def reset_cache_only(self) -> None:
        from mlx_lm.models.cache import make_prompt_cache

        self.cache = make_prompt_cache(self.model, self.max_kv_size)
        self.cached = []

    def send(self, text: str) -> Iterator[str]:
        """Add a user message and stream the reply's text pieces."""
        from mlx_lm.generate import stream_generate

        self.messages.append({"role": "user", "content": text})
        prompt = self._fit()
        new = self._new_tokens(prompt)
        reply_tokens: list[int] = []
        pieces: list[str] = []
        response = None
        for response in stream_generate(self.model, self.tokenizer, new, prompt_cache=self.cache,
                                        **self.sampling.generate_kwargs()):
            reply_tokens.append(response.token)
            pieces.append(response.text)
            yield response.text
        # The generator feeds every token it yields, the last one included.
        self.cached = (prompt + reply_tokens)[: self.cache_offset]
        self.messages.append({"role": "assistant", "content": "".join(pieces)})
        if response is not None:
            self.stats = TurnStats(len(new), response.prompt_tps, response.generation_tokens,
                                   response.generation_tps, response.peak_memory, self.cache_offset,
                                   response.finish_reason, self.compute_dtype)
