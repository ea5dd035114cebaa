"""The ``sentinel`` command, the top floor. Thin on purpose: each subcommand parses flags,
resolves the MODEL argument to a local folder (resolve.py) and calls into forge_cuda/,
convert/ or runtime_mlx/; user mistakes become one line."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

# Before torch loads OpenMP: sleep rather than spin while waiting, so a busy CPU does not
# starve its own threads (scripts/env.sh explains the measurement). Users can override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from sentinel import __version__
from sentinel.errors import SentinelError


BUG_HINT = ("error: this is a bug in Sentinel, not a problem with your input; please report it with the "
            "traceback above")


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _terminate(signum, frame):
    """SIGTERM -> SystemExit, so ``finally`` blocks and atomic_dir's cleanup run as on Ctrl-C."""
    raise SystemExit(128 + signum)


class SentinelGroup(click.Group):
    """One line for every user mistake: ``error: <message>`` on stderr and a non-zero exit.

    SentinelError (our checks) exits 1; click's usage errors (bad option values, unknown
    options) exit 2; Ctrl-C and SIGTERM exit 130/143 after cleanup. Anything else is a bug:
    its traceback is printed with a line asking to report it.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            rv = self._main(args, prog_name, complete_var, **extra)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            hint = ""
            ctx = getattr(e, "ctx", None)
            if isinstance(e, click.UsageError) and ctx is not None:
                hint = f" (see `{ctx.command_path} --help`)"
            click.echo(f"error: {_one_line(e.format_message())}{hint}", err=True)
            sys.exit(e.exit_code)
        except SentinelError as e:
            click.echo(f"error: {_one_line(str(e))}", err=True)
            sys.exit(1)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except SystemExit as e:
            if e.code == 128 + signal.SIGTERM:
                click.echo("error: terminated (SIGTERM)", err=True)
            raise
        except Exception:
            traceback.print_exc()
            click.echo(BUG_HINT, err=True)
            sys.exit(70)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SentinelError as e:  # also raised by subcommands invoked with standalone_mode=False
            click.echo(f"error: {_one_line(str(e))}", err=True)
            sys.exit(1)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's whole first docstring line (click would cut it at ~45 characters with '...')."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=SentinelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sentinel")
def main() -> None:
    """Domain-specialise, prune and ship LLMs to Apple Silicon."""


def _register() -> None:
    """Add every ``COMMANDS`` list found in this package's modules (each command imports lazily)."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue  # __main__ would run the CLI
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register()
