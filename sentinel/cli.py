"""The ``sentinel`` command. Thin on purpose: each subcommand parses flags and
calls into forge_cuda/, convert/ or runtime_mlx/; user mistakes become one line."""

from __future__ import annotations

import os
import sys

# Before torch loads OpenMP: sleep rather than spin while waiting, so a busy CPU does not
# starve its own threads (scripts/env.sh explains the measurement). Users can override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from sentinel import __version__
from sentinel.errors import SentinelError


class SentinelGroup(click.Group):
    """Turns SentinelError anywhere below into ``error: <message>`` and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SentinelError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=SentinelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sentinel")
def main() -> None:
    """Domain-specialise, prune and ship LLMs to Apple Silicon."""


def _register() -> None:
    """Add every ``COMMANDS`` list found in sentinel/commands/ (each module imports lazily)."""
    import importlib
    import pkgutil

    import sentinel.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sentinel.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register()

if __name__ == "__main__":
    main()
