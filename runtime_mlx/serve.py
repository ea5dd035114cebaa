"""``sentinel serve``: mlx-lm's OpenAI-compatible server, serving exactly one model, safely.

mlx-lm's server stays the engine (request parsing, batching, prompt cache,
streaming, tool calls). What wraps it here:

- models load through ``sentinel_load`` (our per-layer-head classes);
- only the model named on the command line is served: a request naming another
  model, a draft model or adapters gets a 4xx that reveals nothing about the disk,
  and no request can make the server load anything;
- no CORS headers unless ``--allow-origin`` lists the origin, and a request
  carrying any other ``Origin`` is refused (a web page cannot drive the server);
- request bodies are bounded, must be UTF-8 JSON objects, text only (no image
  URLs for the server to fetch), and prompts are bounded (the model's context);
- sockets time out; SIGINT/SIGTERM stop the listener and the generation thread.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional

from sentinel.errors import SentinelError

@dataclass
class Settings:
    """What the wrapper enforces; one instance per server."""

    name: str  # the served model's public name (its folder name)
    folder: Path
    allow_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8 * 2**20
    max_prompt_tokens: Optional[int] = None  # None: no bound
    context: Optional[int] = None  # the model's context: max_tokens above it is refused
    timeout_s: float = 120.0
    keep_dtype: bool = False
    local: threading.local = field(default_factory=threading.local)


def sentinel_load(path_or_hf_repo, tokenizer_config=None, model_config=None, adapter_path=None, lazy=False,
                  return_config=False, revision=None, trust_remote_code=False, keep_dtype=False):
    """Drop-in for ``mlx_lm.utils.load`` that builds our per-layer-head classes."""
    from mlx_lm.utils import load_adapters

    from runtime_mlx.loader import check_mlx_folder, load_model, load_tokenizer
    from sentinel.validate import read_config

    folder = check_mlx_folder(path_or_hf_repo)
    model = load_model(folder, lazy=lazy, keep_dtype=keep_dtype)
    if adapter_path is not None:
        model = load_adapters(model, adapter_path)
        model.eval()
    tokenizer = load_tokenizer(folder, tokenizer_config)
    return (model, tokenizer, read_config(folder)) if return_config else (model, tokenizer)


class PromptTooLong(ValueError):
    """A request whose prompt exceeds the bound; answered with 400."""


def _classes(settings: Settings):
    """mlx-lm's ModelProvider, ResponseGenerator and APIHandler, each narrowed to one model."""
    from mlx_lm import server

    served = {"default_model", settings.name}

    class Provider(server.ModelProvider):
        def __init__(self, cli_args):
            super().__init__(cli_args)
            self._model_map[settings.name] = cli_args.model
            self._adapter_map[settings.name] = cli_args.adapter_path

        def load(self, model_path, adapter_path=None, draft_model_path=None):
            if model_path not in served or adapter_path is not None or draft_model_path != "default_model":
                raise ValueError(f"this server serves only {settings.name!r}")
            return super().load(model_path, None, draft_model_path)

    class Generator(server.ResponseGenerator):
        def _tokenize(self, tokenizer, request, args):
            out = super()._tokenize(tokenizer, request, args)
            limit = settings.max_prompt_tokens
            if limit is not None and len(out[0]) > limit:
                raise PromptTooLong(f"the prompt has {len(out[0])} tokens; this server accepts at most {limit} "
                                    "(the model's context)")
            return out

        def generate(self, *args, **kwargs):
            try:
                return super().generate(*args, **kwargs)
            except PromptTooLong:
                settings.local.status = 400
                raise

    class Handler(server.APIHandler):
        timeout = settings.timeout_s  # socket timeout: a stalled client cannot hold a thread forever

        def _set_cors_headers(self):
            origin = self.headers.get("Origin")
            if origin is not None and origin in settings.allow_origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Vary", "Origin")
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")

        def _set_completion_headers(self, status_code: int = 200):
            if status_code == 404 and getattr(settings.local, "status", None):
                status_code, settings.local.status = settings.local.status, None
            super()._set_completion_headers(status_code)

        def _refuse(self, status: int, message: str) -> None:
            self.close_connection = True
            body = json.dumps({"error": message}).encode()
            self._set_completion_headers(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _foreign_origin(self) -> bool:
            origin = self.headers.get("Origin")
            if origin is None or origin in settings.allow_origins:
                return False
            self._refuse(403, "cross-origin requests are refused (start the server with --allow-origin ORIGIN)")
            return True

        def do_OPTIONS(self):
            if not self._foreign_origin():
                super().do_OPTIONS()

        def do_GET(self):
            if self._foreign_origin():
                return
            super().do_GET()

        def do_POST(self):
            if self._foreign_origin():
                return
            if self.path not in ("/v1/completions", "/v1/chat/completions", "/chat/completions"):
                return super().do_POST()  # mlx-lm's 404
            body = self._read_body()
            if body is None:
                return
            raw = json.dumps(body).encode()
            self.rfile = io.BytesIO(raw)  # mlx-lm's do_POST reads the checked body from here
            del self.headers["Content-Length"]
            self.headers["Content-Length"] = str(len(raw))
            super().do_POST()

        def _read_body(self) -> Optional[dict]:
            """The request body as a checked JSON object, or None after answering with a 4xx."""
            length = self.headers.get("Content-Length")
            try:
                n = int(length) if length is not None else None
            except ValueError:
                n = -1
            if n is None:
                return self._refuse(411, "Content-Length header is required")
            if n < 0:
                return self._refuse(400, "invalid Content-Length header")
            if n > settings.max_body_bytes:
                return self._refuse(413, f"request body of {n:,} bytes exceeds the limit of "
                                         f"{settings.max_body_bytes:,} bytes")
            try:
                body = json.loads(self.rfile.read(n).decode("utf-8"))
            except UnicodeDecodeError:
                return self._refuse(400, "request body is not UTF-8")
            except json.JSONDecodeError as e:
                return self._refuse(400, f"request body is not valid JSON ({e})")
            except (TimeoutError, OSError):
                self.close_connection = True
                return None
            if not isinstance(body, dict):
                return self._refuse(400, "request body must be a JSON object")
            if body.get("model", settings.name) not in served:
                return self._refuse(404, f"this server serves only the model {settings.name!r} (GET /v1/models)")
            if body.get("draft_model", "default_model") != "default_model" or body.get("adapters") is not None:
                return self._refuse(400, "requests cannot choose draft models or adapters here")
            limit = settings.context
            for key in ("max_tokens", "max_completion_tokens"):
                value = body.get(key)
                if limit is not None and isinstance(value, int) and value > limit:
                    return self._refuse(400, f"{key} is at most {limit} here (the model's context)")
            messages = body.get("messages")
            if isinstance(messages, list) and any(True for _ in server._image_parts(
                    [m for m in messages if isinstance(m, dict)])):
                return self._refuse(400, "image inputs are not supported: this server runs a text-only model")
            body["model"] = settings.name  # responses name the model, not "default_model"
            return body

        def handle_models_request(self):
            wanted = self.path.split("/", 3)[3] if self.path.count("/") >= 3 else None
            if wanted is not None and wanted != settings.name:
                return self._refuse(404, f"this server serves only the model {settings.name!r}")
            card = {"id": settings.name, "object": "model", "created": self.created, "owned_by": "sentinel"}
            body = json.dumps(card if wanted else {"object": "list", "data": [card]}).encode()
            self._set_completion_headers(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Provider, Generator, Handler


def check_listen(host: str, port: int) -> None:
    """Fail now, in one line, when ``host:port`` cannot be listened on (bad address, port taken)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except (OSError, OverflowError) as e:
        raise SentinelError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e})") from None


def _run(settings: Settings, host: str, port: int, provider) -> None:
    """Replacement for ``mlx_lm.server.run``: our classes, bind before the model loads, clean stop."""
    from http.server import ThreadingHTTPServer

    from mlx_lm.models.cache import LRUPromptCache

    _, Generator, Handler = _classes(settings)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    try:
        httpd = server_class(address, None)
    except OSError as e:
        raise SentinelError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    generator = Generator(provider, LRUPromptCache(provider.cli_args.prompt_cache_size))
    httpd.RequestHandlerClass = partial(Handler, generator)
    print(f"serving {settings.name} on http://{host}:{port}/v1 (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        generator.stop_and_join()


class _Parsed(Exception):
    def __init__(self, args):
        self.args_ = args


def parse_server_args(argv: list[str]):
    """mlx-lm's own parser run on ``argv`` without starting anything: its Namespace, or one line."""
    import contextlib

    from mlx_lm import server

    root = logging.getLogger()
    saved = server.run, server.ModelProvider, sys.argv, list(root.handlers), root.level
    captured = io.StringIO()

    def stop(host, port, args):
        raise _Parsed(args)

    server.run, server.ModelProvider, sys.argv = stop, (lambda args: args), argv
    try:
        with contextlib.redirect_stderr(captured):
            server.main()
    except _Parsed as parsed:
        return parsed.args_
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        last = lines[-1].rpartition("error: ")[2] if lines else "bad arguments"
        raise SentinelError(f"mlx_lm.server refused the extra flags: {last}") from None
    finally:
        server.run, server.ModelProvider, sys.argv = saved[:3]
        root.handlers[:] = saved[3]
        root.setLevel(saved[4])
    raise SentinelError("mlx_lm.server did not start")


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8080, extra_args: tuple[str, ...] = (),
          allow_origins: tuple[str, ...] = (), max_body_bytes: int = 8 * 2**20,
          max_prompt_tokens: Optional[int] = None, timeout_s: float = 120.0, keep_dtype: bool = False) -> int:
    """Run mlx-lm's server (blocking) on ``model`` alone; ``extra_args`` are other mlx_lm.server flags.

    ``max_prompt_tokens`` defaults to the model's context (config.json). Returns the exit code once
    a signal stopped it (130 SIGINT, 143 SIGTERM) and the listener and generation thread are down."""
    from mlx_lm import server

    from runtime_mlx.loader import check_mlx_folder, load_model, model_context

    folder = check_mlx_folder(model)
    # Our own values go first with markers: argparse keeps the last occurrence, so any of these flags
    # (or an abbreviation such as --mod) among the extra arguments shows up as a changed value.
    mark = "\0sentinel"
    args = parse_server_args(["sentinel serve", "--model", mark, "--host", mark, "--port", "65536",
                              "--allowed-origins", mark, *extra_args])
    if (args.model, args.host, args.port, args.allowed_origins) != (mark, mark, 65536, [mark]):
        raise SentinelError("--model, --host, --port and --allowed-origins cannot be passed through to "
                            "mlx_lm.server; use sentinel serve's MODEL, --host, --port and --allow-origin")
    check_listen(host, port)
    load_model(folder)  # fail here, in one line, before the server starts listening
    settings = Settings(name=folder.resolve().name, folder=folder, allow_origins=tuple(allow_origins),
                        max_body_bytes=max_body_bytes, timeout_s=timeout_s, keep_dtype=keep_dtype,
                        max_prompt_tokens=max_prompt_tokens or model_context(folder), context=model_context(folder))
    Provider, _, _ = _classes(settings)
    server.load = partial(sentinel_load, keep_dtype=keep_dtype)
    server.ModelProvider = Provider
    server.run = lambda host_, port_, provider: _run(settings, host_, port_, provider)
    argv = ["sentinel serve", "--model", str(folder), "--host", host, "--port", str(port), *extra_args]
    saved, sys.argv = sys.argv, argv
    try:
        server.main()
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:  # SIGTERM (sentinel.cli turns it into SystemExit), after _run's cleanup
        if isinstance(e.code, int) and e.code > 128:
            return e.code
        raise
    finally:
        sys.argv = saved
    return 0
