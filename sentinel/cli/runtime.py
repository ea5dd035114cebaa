"""``sentinel chat|generate|serve``: run a converted (forged or plain) MLX model."""

from __future__ import annotations

import sys

import click

from sentinel.errors import SentinelError
from sentinel.cli.options import POSITIVE, PORT, FiniteFloat, Host
from sentinel.cli.resolve import resolve_mlx

LONG_PROMPT = click.Choice(["refuse", "truncate"])


def sampling_options(f):
    """The sampling flags chat and generate share (mlx-lm's sampler and logits processors)."""
    options = [
        click.option("--temp", type=FiniteFloat(min=0), default=0.0, show_default=True,
                     help="Sampling temperature (0 = greedy)."),
        click.option("--top-p", type=FiniteFloat(0, 1), default=1.0, show_default=True,
                     help="Nucleus sampling: keep the most likely tokens whose probabilities sum to this (1 = off)."),
        click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Sample among the k most likely tokens (0 = off)."),
        click.option("--min-p", type=FiniteFloat(0, 1), default=0.0, show_default=True,
                     help="Drop tokens less likely than this fraction of the top token's probability (0 = off)."),
        click.option("--repetition-penalty", type=FiniteFloat(min=0, min_open=True), default=None,
                     help="Divide the logits of recently generated tokens by this (e.g. 1.1) [default: off]."),
        click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=None,
                     help="PRNG seed for reproducible sampling."),
        click.option("--max-tokens", type=POSITIVE, default=256, show_default=True,
                     help="Stop after this many generated tokens."),
        click.option("--system", default=None, help="System prompt."),
        click.option("--long-prompt", type=LONG_PROMPT, default="refuse", show_default=True,
                     help="A prompt longer than the model's context: refuse it, or truncate it (generate keeps "
                          "its last tokens, chat drops the oldest turns)."),
        click.option("--keep-dtype", is_flag=True,
                     help="On a CPU backend, compute in the stored fp16/bf16 instead of float32 (much slower; "
                          "Apple GPUs always use the stored dtype)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _sampling(kw):
    from runtime_mlx.chat import Sampling

    return Sampling(kw["temp"], kw["top_p"], kw["top_k"], kw["min_p"], kw["repetition_penalty"],
                    kw["max_tokens"], kw["seed"])


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SentinelError(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def _prompt_text(prompt: str) -> str:
    """The --prompt value ('-': stdin) as checked UTF-8 text."""
    if prompt == "-":
        prompt = _decode(sys.stdin.buffer.read(), "stdin")
    else:
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # undecodable argv bytes arrive as lone surrogates
            raise SentinelError("--prompt is not UTF-8 text") from None
    if not prompt.strip():
        raise SentinelError("the prompt is empty")
    return prompt


@click.command("generate", epilog="Example: sentinel generate forged-mlx -p 'Write a function that reverses a list'")
@click.argument("model")
@click.option("--prompt", "-p", required=True, help="The prompt text; '-' reads it from stdin (UTF-8).")
@click.option("--raw", is_flag=True, help="Skip the chat template (plain text continuation).")
@click.option("--verbose", "-v", is_flag=True, help="Print speed, memory and compute dtype to stderr.")
@sampling_options
def generate(model, prompt, raw, verbose, **kw):
    """Generate one reply to the --prompt text with MODEL, streamed to stdout."""
    from runtime_mlx import load
    from runtime_mlx.chat import TurnStats
    from runtime_mlx.generate import fit_prompt, prompt_tokens, stream
    from runtime_mlx.loader import check_mlx_folder, compute_dtype, model_context

    prompt = _prompt_text(prompt)
    folder = check_mlx_folder(resolve_mlx(model))
    model_, tokenizer = load(folder, keep_dtype=kw["keep_dtype"])
    tokens = fit_prompt(prompt_tokens(tokenizer, prompt, kw["system"], raw), model_context(folder),
                        kw["max_tokens"], kw["long_prompt"])
    stats = TurnStats(compute_dtype=compute_dtype(model_))
    for piece in stream(model_, tokenizer, tokens, _sampling(kw), stats):
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
    sys.stdout.flush()
    if verbose:
        click.echo(stats.line(), err=True)


HELP = "commands: /reset (forget the conversation), /stats (speed, memory), /exit"


@click.command("chat", epilog="Example: sentinel chat forged-mlx --system 'You are a terse Python expert.'")
@click.argument("model")
@click.option("--max-kv-size", type=click.IntRange(min=16), default=None,
              help="Keep at most this many tokens in the KV cache (a rotating cache; older tokens are "
                   "forgotten) [default: unbounded].")
@sampling_options
def chat(model, max_kv_size, **kw):
    """Multi-turn chat with MODEL; the KV cache carries the history, so only new tokens are prefilled."""
    from runtime_mlx import load
    from runtime_mlx.chat import ChatSession
    from runtime_mlx.loader import check_mlx_folder, compute_dtype, model_context

    folder = check_mlx_folder(resolve_mlx(model))
    model_, tokenizer = load(folder, keep_dtype=kw["keep_dtype"])
    session = ChatSession(model_, tokenizer, kw["system"], _sampling(kw), max_kv_size,
                          context=model_context(folder), long_prompt=kw["long_prompt"],
                          compute_dtype=compute_dtype(model_))
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(HELP, err=True)
    while True:
        if interactive:
            click.echo(">>> ", nl=False, err=True)
        line = sys.stdin.buffer.readline()
        if not line:
            break
        try:
            text = _decode(line, "input").rstrip("\n")
            if _chat_turn(session, text):
                break
        except SentinelError as e:
            if not interactive:
                raise
            click.echo(f"error: {e}", err=True)  # the session goes on; the bad turn was not kept


def _chat_turn(session, text: str) -> bool:
    """Handle one input line; True when the user asked to exit."""
    command = text.strip()
    if not command:
        return False
    if command == "/exit":
        return True
    if command == "/reset":
        session.reset()
        click.echo("[conversation reset]")
    elif command == "/stats":
        click.echo(session.stats.line())
    elif text.startswith("/") and " " not in command:
        click.echo(f"unknown command {command}; {HELP}")
    else:
        for piece in session.send(text):
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
    return False


@click.command("serve", epilog="Example: sentinel serve forged-mlx --port 8080   (then POST /v1/chat/completions)")
@click.argument("model")
@click.option("--host", type=Host(), default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; another address exposes the model to the network).")
@click.option("--port", type=PORT, default=8080, show_default=True, help="TCP port to listen on.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages from this origin (e.g. http://localhost:3000) call the server; repeatable "
                   "[default: none, browsers are refused].")
@click.option("--max-body-bytes", type=POSITIVE, default=8 * 2**20, show_default=True,
              help="Largest request body accepted (413 above).")
@click.option("--max-prompt-tokens", type=POSITIVE, default=None,
              help="Longest prompt accepted, in tokens (400 above) [default: the model's context].")
@click.option("--max-tokens", type=POSITIVE, default=512, show_default=True,
              help="Reply length for requests that set no max_tokens (never above the model's context).")
@click.option("--request-timeout", type=FiniteFloat(min=1), default=120.0, show_default=True,
              help="Seconds a client may stall while sending or receiving before it is dropped.")
@click.option("--keep-dtype", is_flag=True,
              help="On a CPU backend, compute in the stored fp16/bf16 instead of float32.")
@click.option("--verbose", "-v", is_flag=True,
              help="Add speed and peak memory to each request's log line [default: one short line per request].")
def serve(model, host, port, allow_origins, max_body_bytes, max_prompt_tokens, max_tokens, request_timeout,
          keep_dtype, verbose):
    """OpenAI-compatible HTTP server for MODEL only (/v1/models, /v1/chat/completions, /v1/completions)."""
    import os

    from runtime_mlx.serve import serve as run_server

    code = run_server(resolve_mlx(model), host, port, allow_origins=tuple(allow_origins), max_body_bytes=max_body_bytes,
                      max_prompt_tokens=max_prompt_tokens, timeout_s=request_timeout, keep_dtype=keep_dtype,
                      max_tokens=max_tokens, verbose=verbose)
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        # A signal stopped it (130/143): the listener is closed and no generation runs. Skip native
        # teardown: MLX's static destructors after a worker thread sometimes abort ("terminate called
        # without an active exception"), which would turn a clean stop into SIGABRT.
        os._exit(code)


COMMANDS = [chat, generate, serve]
