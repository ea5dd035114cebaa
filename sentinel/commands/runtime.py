"""``sentinel chat|generate|serve``: run a converted (forged or plain) MLX model."""

from __future__ import annotations

import sys

import click


def sampling_options(f):
    """The sampling flags chat and generate share (mlx-lm's sampler and logits processors)."""
    options = [
        click.option("--temp", type=float, default=0.0, show_default=True, help="Sampling temperature (0 = greedy)."),
        click.option("--top-p", type=float, default=1.0, show_default=True),
        click.option("--top-k", type=int, default=0, show_default=True, help="0 = off."),
        click.option("--min-p", type=float, default=0.0, show_default=True),
        click.option("--repetition-penalty", type=float, default=None),
        click.option("--seed", type=int, default=None, help="PRNG seed for reproducible sampling."),
        click.option("--max-tokens", type=int, default=256, show_default=True),
        click.option("--system", default=None, help="System prompt."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _sampling(kw):
    from runtime_mlx.chat import Sampling

    return Sampling(kw["temp"], kw["top_p"], kw["top_k"], kw["min_p"], kw["repetition_penalty"],
                    kw["max_tokens"], kw["seed"])


@click.command("generate")
@click.argument("model")
@click.option("--prompt", "-p", required=True, help="Prompt text ('-' reads stdin).")
@click.option("--raw", is_flag=True, help="Skip the chat template.")
@click.option("--verbose", "-v", is_flag=True, help="Print speed and memory to stderr.")
@sampling_options
def generate(model, prompt, raw, verbose, **kw):
    """Generate one reply to PROMPT, streamed to stdout."""
    from runtime_mlx import load
    from runtime_mlx.chat import TurnStats
    from runtime_mlx.generate import prompt_tokens, stream

    if prompt == "-":
        prompt = sys.stdin.read()
    model_, tokenizer = load(model)
    stats = TurnStats()
    for piece in stream(model_, tokenizer, prompt_tokens(tokenizer, prompt, kw["system"], raw), _sampling(kw), stats):
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
    sys.stdout.flush()
    if verbose:
        click.echo(stats.line(), err=True)


HELP = "commands: /reset (forget the conversation), /stats (speed, memory), /exit"


@click.command("chat")
@click.argument("model")
@click.option("--max-kv-size", type=int, default=None, help="Keep at most this many tokens in the KV cache.")
@sampling_options
def chat(model, max_kv_size, **kw):
    """Multi-turn chat; the KV cache carries the history, so only new tokens are prefilled."""
    from runtime_mlx import load
    from runtime_mlx.chat import ChatSession

    model_, tokenizer = load(model)
    session = ChatSession(model_, tokenizer, kw["system"], _sampling(kw), max_kv_size)
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(HELP, err=True)
    while True:
        if interactive:
            click.echo(">>> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            session.reset()
            click.echo("[conversation reset]")
            continue
        if text.strip() == "/stats":
            click.echo(session.stats.line())
            continue
        if text.startswith("/") and " " not in text.strip():
            click.echo(f"unknown command {text.strip()}; {HELP}")
            continue
        for piece in session.send(text):
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()


@click.command("serve", context_settings={"ignore_unknown_options": True})
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
def serve(model, host, port, server_args):
    """OpenAI-compatible HTTP server (mlx-lm's) on MODEL; extra flags go to mlx_lm.server."""
    from runtime_mlx.serve import serve as run_server

    run_server(model, host, port, tuple(server_args))


COMMANDS = [chat, generate, serve]
