"""One-shot generation: the prompt (chat-templated unless raw) streamed through mlx-lm."""

from __future__ import annotations

from typing import Iterator, Optional

from runtime_mlx.chat import Sampling, TurnStats


def prompt_tokens(tokenizer, prompt: str, system: Optional[str] = None, raw: bool = False) -> list[int]:
    """Token ids for a one-shot prompt: through the chat template when the model has one."""
    if raw or not getattr(tokenizer, "chat_template", None):
        if system:
            prompt = f"{system}\n{prompt}"
        return list(tokenizer.encode(prompt))
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def fit_prompt(tokens: list[int], context: Optional[int], max_tokens: int, mode: str = "refuse") -> list[int]:
    """The prompt within the model's context: refused (one line) or cut to its last tokens.

    ``truncate`` keeps the last ``context - max_tokens`` tokens (at least one), so the reply fits too.
    """
    from sentinel.errors import SentinelError

    if not tokens:
        raise SentinelError("the prompt is empty (no tokens)")
    if context is None or len(tokens) < context:
        return tokens
    if mode != "truncate":
        raise SentinelError(f"the prompt is {len(tokens)} tokens, the model's context is {context}: shorten it, "
                            "or pass --long-prompt truncate to keep its last tokens")
    return tokens[-max(1, context - max_tokens):]


def stream(model, tokenizer, tokens: list[int], sampling: Sampling, stats: TurnStats) -> Iterator[str]:
    """Yield text pieces; fill ``stats`` when the generator finishes."""
    import mlx.core as mx
    from mlx_lm.generate import stream_generate

    if sampling.seed is not None:
        mx.random.seed(sampling.seed)
    response = None
    for response in stream_generate(model, tokenizer, tokens, **sampling.generate_kwargs()):
        yield response.text
    if response is not None:
        stats.__init__(response.prompt_tokens, response.prompt_tps, response.generation_tokens,
                       response.generation_tps, response.peak_memory, 0, response.finish_reason,
                       stats.compute_dtype)
