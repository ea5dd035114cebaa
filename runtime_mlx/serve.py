"""``sentinel serve``: an OpenAI-compatible HTTP server for one model, safely.

A small layer of our own (stdlib ``ThreadingHTTPServer``, serve_http.py) around mlx-lm's
public generation functions (serve_engine.py), so no private name of ``mlx_lm.server`` is
patched and the next mlx-lm release cannot break it. What it enforces:

- only the model named on the command line is served: a request naming another model, a
  draft model or adapters gets a 4xx that reveals nothing about the disk;
- no CORS headers unless ``--allow-origin`` lists the origin, and a request carrying any
  other ``Origin`` is refused (a web page cannot drive the server);
- request bodies are bounded, must be UTF-8 JSON objects of the documented shape
  (serve_api.py), text only, and prompts are bounded (the model's context);
- sockets time out; SIGINT/SIGTERM stop the listener and the generation cleanly.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from sentinel.errors import SentinelError


@dataclass
class Settings:
    """What the server enforces; one instance per server."""

    name: str  # the served model's public name (its folder name)
    allow_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8 * 2**20
    max_prompt_tokens: Optional[int] = None  # None: no bound
    context: Optional[int] = None  # the model's context: max_tokens above it is refused
    timeout_s: float = 120.0
    max_tokens: int = 512  # for requests that name none


@dataclass
class App:
    """What every request handler reads (``server.app``)."""

    settings: Settings
    engine: object
    verbose: bool = False
    created: int = 0
    quiet_paths: tuple[str, ...] = ("/health",)  # polled by clients and tests: not logged
    inflight: int = 0  # requests being answered (Handler counts them under ``idle``)
    idle: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def request(self):
        """Count a request from its first byte until its log line is written."""
        with self.idle:
            self.inflight += 1
        try:
            yield
        finally:
            with self.idle:
                self.inflight -= 1
                self.idle.notify_all()

    def drain(self, timeout: float = 5.0) -> None:
        """Wait (briefly) for requests in flight to finish and log, so "stopped" is the last line."""
        with self.idle:
            self.idle.wait_for(lambda: self.inflight == 0, timeout=timeout)


def _listener(host: str, port: int) -> ThreadingHTTPServer:
    """The bound socket (before the model loads), or one line naming the address and the cause."""
    from runtime_mlx.serve_http import Handler

    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        return server_class(address, Handler)
    except (OSError, OverflowError) as e:
        raise SentinelError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e})") from None


def check_listen(host: str, port: int) -> None:
    """Fail now, in one line, when ``host:port`` cannot be listened on (bad address, port taken)."""
    _listener(host, port).server_close()


def _engine(folder: Path, settings: Settings, keep_dtype: bool):
    import mlx.core as mx

    from runtime_mlx.loader import load_model, load_tokenizer
    from runtime_mlx.serve_engine import Engine

    model = load_model(folder, lazy=False, keep_dtype=keep_dtype)
    mx.eval(model.parameters())  # loaded here, not by whichever request thread touches it first
    return Engine(model, load_tokenizer(folder), settings.max_prompt_tokens, settings.context)


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8080, allow_origins: tuple[str, ...] = (),
          max_body_bytes: int = 8 * 2**20, max_prompt_tokens: Optional[int] = None, timeout_s: float = 120.0,
          keep_dtype: bool = False, max_tokens: int = 512, verbose: bool = False) -> int:
    """Serve ``model`` until SIGINT/SIGTERM; return 0, 130 (SIGINT) or 143 (SIGTERM).

    ``max_prompt_tokens`` defaults to the model's context (config.json); ``max_tokens`` is the reply
    length for requests that name none. The listener binds before the model loads, so a taken port
    is found out at once."""
    from runtime_mlx.loader import check_mlx_folder, model_context

    folder = check_mlx_folder(model)
    context = model_context(folder)
    settings = Settings(name=folder.resolve().name, allow_origins=tuple(allow_origins),
                        max_body_bytes=max_body_bytes, max_prompt_tokens=max_prompt_tokens or context,
                        context=context, timeout_s=timeout_s, max_tokens=max_tokens)
    httpd = _listener(host, port)
    try:
        return _run(httpd, folder, settings, keep_dtype, verbose, f"http://{host}:{port}/v1")
    finally:
        httpd.server_close()


def _run(httpd, folder: Path, settings: Settings, keep_dtype: bool, verbose: bool, url: str) -> int:
    engine = None
    try:
        engine = _engine(folder, settings, keep_dtype)
        httpd.app = App(settings, engine, verbose=verbose, created=int(time.time()))
        print(f"serving {settings.name} on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        return _stopped(engine, 130, getattr(httpd, "app", None))
    except SystemExit as e:  # SIGTERM: sentinel.cli turns it into SystemExit(143)
        if isinstance(e.code, int) and e.code > 128:
            return _stopped(engine, e.code, getattr(httpd, "app", None))
        raise
    return 0


def _stopped(engine, code: int, app: "App | None" = None) -> int:
    """Tell a running generation to stop and wait (briefly) until it has let go of the model and every
    request in flight has written its log line."""
    if engine is not None:
        engine.stopping.set()
        if engine.lock.acquire(timeout=10):
            engine.lock.release()
    if app is not None:
        app.drain()
    print(f"stopped ({'SIGINT' if code == 130 else 'SIGTERM' if code == 143 else code})", file=sys.stderr,
          flush=True)
    return code

