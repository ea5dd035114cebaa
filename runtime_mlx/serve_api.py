"""The request shapes ``sentinel serve`` accepts, checked before anything runs.

A body that is not one of the documented shapes is answered with a 400 in OpenAI's error
format ({"error": {"message", "type", "param", "code"}}), so clients such as the ``openai``
package show our text. Checks never recurse into the body: a deeply nested value is refused
by its type, not by a RecursionError.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

ROLES = ("system", "user", "assistant", "developer", "tool")
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
COMPLETION_PATHS = ("/v1/completions", "/completions")
# Accepted only at their neutral value (absent, null, false, 1 or empty): anything else is refused by name.
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "n", "echo",
               "suffix", "best_of", "response_format", "logit_bias", "draft_model", "adapters")
IGNORED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")  # no effect on the text
KNOWN = {"model", "messages", "prompt", "stream", "stream_options", "max_tokens", "max_completion_tokens",
         "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
         "seed", "stop", *UNSUPPORTED, *IGNORED}
NEUTRAL = (None, False, 1, [], {}, "")


class ApiError(Exception):
    """A client mistake: HTTP status plus OpenAI's error object."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 type_: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Request:
    """One checked completion request."""

    chat: bool
    messages: Optional[list[dict]] = None  # chat: [{"role", "content": str}]
    prompt: Optional[str] = None  # completions
    stream: bool = False
    include_usage: bool = False
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    seed: Optional[int] = None
    stop: list[str] = field(default_factory=list)


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object, or ApiError(400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON ({e})") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _neutral(value: Any) -> bool:
    """Absent, null, false, 1 or empty: the value that asks for nothing (type-exact: true is not 1)."""
    return any(type(value) is type(v) and value == v for v in NEUTRAL)


def _no_constant(name: str):
    raise ApiError(400, f"request body holds {name}, which is not JSON")


def _number(body: dict, key: str, default, lo: float, hi: float, integer: bool = False):
    value = body.get(key)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise ApiError(400, f"'{key}' must be {what} between {lo:g} and {hi:g}, got {json.dumps(value)[:40]}",
                       param=key)
    return value


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or a list of {"type": "text", "text": ...} parts."""
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") not in ("text", None) for p in content):
            raise ApiError(400, "image inputs are not supported: this server runs a text-only model",
                           param=f"messages[{i}].content")
        if all(isinstance(p.get("text"), str) for p in content):
            return "".join(p["text"] for p in content)
    raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts",
                   param=f"messages[{i}].content")


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {\"role\", \"content\"} objects",
                       param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"messages[{i}] must be an object whose role is one of {', '.join(ROLES)}",
                           param=f"messages[{i}]")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": _content(m, i)})
    return out


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a non-empty string or a list of up to 4 of them", param="stop")
    return stops


def parse_request(path: str, body: dict, served: str, default_max_tokens: int,
                  context: Optional[int]) -> Request:
    """Check ``body`` (already a JSON object) for ``path``; ApiError names the first problem."""
    model = body.get("model", served)
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    if model not in (served, "default_model"):
        raise ApiError(404, f"this server serves only the model {served!r} (GET /v1/models)", param="model",
                       code="model_not_found")
    for key in UNSUPPORTED:
        if not _neutral(body.get(key)) or (key in ("draft_model", "adapters") and key in body):
            raise ApiError(400, f"'{key}' is not supported by this server", param=key)
    unknown = sorted(k for k in body if k not in KNOWN)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}", param=unknown[0])
    chat = path in CHAT_PATHS
    req = Request(chat=chat)
    if chat:
        req.messages = _messages(body)
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be a non-empty string", param="prompt")
        req.prompt = prompt
    stream = body.get("stream", False)
    options = body.get("stream_options")
    if not isinstance(stream, bool) or not (options is None or isinstance(options, dict)):
        raise ApiError(400, "'stream' must be true or false and 'stream_options' an object", param="stream")
    req.stream, req.include_usage = stream, bool((options or {}).get("include_usage"))
    limit = context if context is not None else 2**31 - 1
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    req.max_tokens = _number(body, key, min(default_max_tokens, limit), 1, limit, integer=True)
    req.temperature = _number(body, "temperature", 0.0, 0, 2)
    req.top_p = _number(body, "top_p", 1.0, 0, 1)
    req.top_k = _number(body, "top_k", 0, 0, 2**31 - 1, integer=True)
    req.min_p = _number(body, "min_p", 0.0, 0, 1)
    req.repetition_penalty = _number(body, "repetition_penalty", None, 0.01, 10)
    req.presence_penalty = _number(body, "presence_penalty", None, -2, 2)
    req.frequency_penalty = _number(body, "frequency_penalty", None, -2, 2)
    req.seed = _number(body, "seed", None, 0, 2**63 - 1, integer=True)
    req.stop = _stop(body)
    return req
