"""Generation for ``sentinel serve``: one request at a time on mlx-lm's public functions.

The prompt goes through the tokenizer's chat template (``apply_chat_template``), tokens
come from ``stream_generate`` with ``make_sampler`` / ``make_logits_processors`` and a fresh
``make_prompt_cache``; stop strings are cut here, holding back text that may begin one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Optional

from runtime_mlx.serve_api import ApiError, Request


@dataclass
class Outcome:
    """What a finished generation reports (filled when its iterator ends)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    generation_tps: float = 0.0
    peak_memory_gb: float = 0.0


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


class Engine:
    """The loaded model; ``generate`` holds a lock, so requests queue instead of sharing the cache."""

    def __init__(self, model, tokenizer, max_prompt_tokens: Optional[int], context: Optional[int]):
        self.model, self.tokenizer = model, tokenizer
        self.max_prompt_tokens, self.context = max_prompt_tokens, context
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def tokens(self, req: Request) -> list[int]:
        """The request's prompt as token ids, within the bounds; ApiError(400) otherwise."""
        tok = self.tokenizer
        if not req.chat:
            ids = list(tok.encode(req.prompt))
        elif getattr(tok, "chat_template", None):
            try:
                ids = list(tok.apply_chat_template(req.messages, add_generation_prompt=True))
            except Exception as e:  # jinja's TemplateError and friends: the messages do not fit the template
                raise ApiError(400, f"the model's chat template refused these messages ({_first_line(e)})",
                               param="messages") from None
        else:  # a base model: a plain transcript
            ids = list(tok.encode("\n".join(m["content"] for m in req.messages) + "\n"))
        limit = self.max_prompt_tokens
        if limit is not None and len(ids) > limit:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; this server accepts at most {limit} "
                                "(the model's context)" if limit == self.context else
                           f"the prompt has {len(ids)} tokens; this server accepts at most {limit}",
                           code="context_length_exceeded")
        if not ids:
            raise ApiError(400, "the prompt is empty (no tokens)")
        return ids

    def generate(self, req: Request, ids: list[int], outcome: Outcome) -> Iterator[str]:
        """Yield the reply's text pieces (stop strings cut off); fill ``outcome`` at the end."""
        import mlx.core as mx
        from mlx_lm.generate import stream_generate
        from mlx_lm.models.cache import make_prompt_cache
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        with self.lock:
            if req.seed is not None:
                mx.random.seed(req.seed)
            sampler = make_sampler(req.temperature, req.top_p, req.min_p, top_k=req.top_k)
            processors = make_logits_processors(repetition_penalty=req.repetition_penalty,
                                                presence_penalty=req.presence_penalty,
                                                frequency_penalty=req.frequency_penalty)
            cut = StopCutter(req.stop)
            outcome.prompt_tokens, response = len(ids), None
            for response in stream_generate(self.model, self.tokenizer, ids, max_tokens=req.max_tokens,
                                            sampler=sampler, logits_processors=processors,
                                            prompt_cache=make_prompt_cache(self.model)):
                piece = cut.feed(response.text)
                if piece:
                    yield piece
                if cut.stopped or self.stopping.is_set():
                    break
            if not cut.stopped:
                rest = cut.flush()
                if rest:
                    yield rest
            if response is not None:
                outcome.completion_tokens = response.generation_tokens
                outcome.finish_reason = "stop" if cut.stopped else (response.finish_reason or "stop")
                outcome.generation_tps, outcome.peak_memory_gb = response.generation_tps, response.peak_memory


class StopCutter:
    """Streams text through, ending at the first stop string; text that may start one waits."""

    def __init__(self, stops: list[str]):
        self.stops, self.text, self.sent, self.stopped = stops, "", 0, False

    def feed(self, piece: str) -> str:
        self.text += piece
        hits = [i for i in (self.text.find(s, max(0, self.sent - len(s) + 1)) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self._send(min(hits))
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        return self._send(len(self.text) - hold)

    def flush(self) -> str:
        return self._send(len(self.text))

    def _send(self, end: int) -> str:
        end = max(end, self.sent)
        out, self.sent = self.text[self.sent:end], end
        return out
