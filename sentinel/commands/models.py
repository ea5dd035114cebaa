"""``sentinel models pull|list``: the embedded default model and the local cache."""

from __future__ import annotations

import click

from sentinel.models import EMBEDDED, list_models, pull


@click.group("models")
def models() -> None:
    """Pull the embedded default model and list local models."""


@models.command("pull")
@click.argument("name", type=click.Choice(sorted(EMBEDDED)))
@click.option("--force", is_flag=True, help="Rebuild the cached folder even if it exists.")
def pull_cmd(name: str, force: bool) -> None:
    """Turn an embedded model into an HF safetensors folder in the cache (once)."""
    path = pull(name, force=force)
    click.echo(str(path))


@models.command("list")
def list_cmd() -> None:
    """Show local models with parameter count and size on disk."""
    rows = list_models()
    if not rows:
        click.echo("no local models; try: sentinel models pull smollm2-135m")
        return
    click.echo(f"{'name':24} {'type':8} {'params':>12} {'size':>10}  path")
    for r in rows:
        name = r["name"] + (" (forged)" if r["forged"] else "")
        click.echo(f"{name:24} {r['model_type']:8} {r['params']:>12,} {r['bytes'] / 2**20:>8.1f}MB  {r['path']}")


COMMANDS = [models]
