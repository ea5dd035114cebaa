"""The HTTP side of ``sentinel serve``: stdlib ``http.server``, OpenAI's routes and error objects.

Routes: GET /health, GET /v1/models[/<id>], POST /v1/chat/completions and /v1/completions
(JSON or server-sent events with ``stream``). Every refusal is a 4xx whose body is
{"error": {"message", "type", "param", "code"}}; nothing a client sends can put a traceback in
the log, and the log gets at most one line per request.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Optional

from runtime_mlx.serve_api import CHAT_PATHS, COMPLETION_PATHS, ApiError, Request, parse_json, parse_request
from runtime_mlx.serve_engine import Outcome


class Handler(BaseHTTPRequestHandler):
    """One connection; ``self.server.app`` holds the settings and the engine (see serve.py)."""

    protocol_version = "HTTP/1.1"
    server_version = "sentinel-serve"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.app.settings.timeout_s  # a stalled client cannot hold a thread forever
        super().setup()
        self.note, self.code = "", "-"

    # -- plumbing ---------------------------------------------------------------------------------------
    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        pass  # http.server's access and error lines: replaced by log_request's single line

    def log_request(self, code="-", size="-"):
        self.code = code  # logged once the request is done (_guarded), with what it produced

    def _log(self) -> None:
        if self.path not in self.server.app.quiet_paths:
            print(f"{self.command} {self.path[:80]} {self.code}{self.note}", file=sys.stderr, flush=True)

    def _cors(self) -> None:
        origin = self.headers.get("Origin") if getattr(self, "headers", None) is not None else None
        if origin is not None and origin in self.server.app.settings.allow_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")

    def _send(self, status: int, body: Optional[dict], content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self._cors()
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e: ApiError) -> None:
        self.note = f" ({e.message[:120]})"
        self._send(e.status, e.body())

    def _foreign_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None or origin in self.server.app.settings.allow_origins:
            return False
        self._error(ApiError(403, "cross-origin requests are refused (start the server with --allow-origin "
                                  "ORIGIN)", code="origin_refused"))
        return True

    def _guarded(self, method) -> None:
        with self.server.app.request():  # counted until the log line is written (App.drain waits at a stop)
            self._handle(method)

    def _handle(self, method) -> None:
        self.note, self.code = "", "-"
        try:
            if not self._foreign_origin():
                method()
        except ApiError as e:
            self._error(e)
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True  # the client went away or stalled: nothing to answer
            self.note += " (client disconnected)"
        except Exception as e:  # a bug of ours, not the client's: a 500 in OpenAI's shape, one log line
            if self.server.app.verbose:
                traceback.print_exc()
            self._answer_bug(e)
        self._log()

    def _answer_bug(self, e: Exception) -> None:
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        self.note = f" (internal error: {e.__class__.__name__}: {first[:160]})"
        try:
            self._send(500, ApiError(500, "internal server error (see the server log)").body())
        except OSError:
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (bad request line, unknown method) in OpenAI's shape too."""
        self.note, self.code = f" ({message or code})", code
        if not hasattr(self, "path"):
            self.command, self.path = self.command or "-", "-"
        try:
            self._send(code, ApiError(code, message or "bad request").body())
        except OSError:
            self.close_connection = True
        if code != 408:
            self._log()

    # -- routes -----------------------------------------------------------------------------------------
    def do_OPTIONS(self):
        self._guarded(lambda: self._send(204, None))

    def do_GET(self):
        self._guarded(self._get)

    def do_POST(self):
        self._guarded(self._post)

    def _get(self) -> None:
        name = self.server.app.settings.name
        card = {"id": name, "object": "model", "created": self.server.app.created, "owned_by": "sentinel"}
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path in ("/v1/models", "/models"):
            return self._send(200, {"object": "list", "data": [card]})
        if self.path.startswith(("/v1/models/", "/models/")):
            if self.path.split("/models/", 1)[1] != name:
                raise ApiError(404, f"this server serves only the model {name!r}", code="model_not_found")
            return self._send(200, card)
        raise ApiError(404, f"no route GET {self.path[:80]}", code="not_found")

    def _body(self) -> dict:
        length, limit = self.headers.get("Content-Length"), self.server.app.settings.max_body_bytes
        if length is None:
            raise ApiError(411, "Content-Length header is required")
        if not length.strip().isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(length) > limit:
            raise ApiError(413, f"request body of {int(length):,} bytes exceeds the limit of {limit:,} bytes")
        return parse_json(self.rfile.read(int(length)))

    def _post(self) -> None:
        if self.path not in CHAT_PATHS + COMPLETION_PATHS:
            raise ApiError(404, f"no route POST {self.path[:80]}", code="not_found")
        app = self.server.app
        req = parse_request(self.path, self._body(), app.settings.name, app.settings.max_tokens,
                            app.settings.context)
        ids = app.engine.tokens(req)
        outcome = Outcome()
        tic = time.monotonic()
        pieces = app.engine.generate(req, ids, outcome)
        try:
            self._stream(req, pieces, outcome) if req.stream else self._complete(req, pieces, outcome)
        finally:
            pieces.close()  # a client that left mid-stream releases the model here
        self.note = (f" (prompt {outcome.prompt_tokens} + {outcome.completion_tokens} tokens, "
                     f"{time.monotonic() - tic:.2f} s" + (f", {outcome.generation_tps:.1f} tok/s, peak "
                     f"{outcome.peak_memory_gb:.3f} GB" if app.verbose else "") + ")")

    # -- responses --------------------------------------------------------------------------------------
    def _envelope(self, req: Request, chunk: bool) -> dict:
        kind = ("chat.completion" if req.chat else "text_completion") + (".chunk" if chunk and req.chat else "")
        return {"id": self.rid, "object": kind, "created": int(time.time()),
                "model": self.server.app.settings.name}

    @staticmethod
    def _usage(outcome: Outcome) -> dict:
        return {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
                "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}

    def _complete(self, req: Request, pieces, outcome: Outcome) -> None:
        self.rid = ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex
        text = "".join(pieces)
        choice = {"index": 0, "finish_reason": outcome.finish_reason, "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if req.chat else {"text": text})
        self._send(200, {**self._envelope(req, False), "choices": [choice], "usage": self._usage(outcome)})

    def _event(self, data: dict | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        self.wfile.write(f"data: {payload}\n\n".encode())
        self.wfile.flush()

    def _choice(self, req: Request, text: Optional[str], finish: Optional[str], first: bool = False) -> dict:
        if not req.chat:
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text is not None else {})
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    def _stream(self, req: Request, pieces, outcome: Outcome) -> None:
        self.rid = ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex
        first = next(pieces, None)  # errors before the first token still get a status code
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self._cors()
        self.end_headers()
        if req.chat:
            self._event({**self._envelope(req, True), "choices": [self._choice(req, None, None, first=True)]})
        if first:
            self._event({**self._envelope(req, True), "choices": [self._choice(req, first, None)]})
        for piece in pieces:
            self._event({**self._envelope(req, True), "choices": [self._choice(req, piece, None)]})
        last = {**self._envelope(req, True), "choices": [self._choice(req, None, outcome.finish_reason)]}
        self._event(last)
        if req.include_usage:
            self._event({**self._envelope(req, True), "choices": [], "usage": self._usage(outcome)})
        self._event("[DONE]")
