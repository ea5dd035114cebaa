"""``sentinel verify|plan|card``: measure a model here, predict it elsewhere, write its card."""

from __future__ import annotations

import click

from sentinel.cli.options import MAX_CONTEXT, POSITIVE, IntList
from sentinel.cli.resolve import resolve_mlx, resolve_plan


def _target_help(what: str) -> str:
    from runtime_mlx.targets import BUILTIN

    return f"{what}: {', '.join(BUILTIN)} (more in $SENTINEL_HOME/targets.json)."


@click.command("verify", epilog="Example: sentinel verify forged-mlx --target macbook-air-8gb")
@click.argument("model")
@click.option("--target", "targets", default=None,
              help=_target_help("Comma-separated targets [default: macbook-air-8gb,macbook-pro-16gb,"
                                "macbook-pro-32gb]; choose from"))
@click.option("--contexts", type=IntList(1, MAX_CONTEXT), default=None,
              help="Comma-separated prompt lengths to measure [default: 512,2048,8192 on Metal; 64,256 on CPU].")
@click.option("--decode-tokens", type=POSITIVE, default=None,
              help="Tokens decoded per run [default: 128 Metal, 8 CPU].")
@click.option("--repeats", type=POSITIVE, default=None,
              help="Runs per context after the warm-up [default: 3 Metal, 2 CPU].")
@click.option("--keep-dtype", is_flag=True,
              help="On a CPU backend, measure in the stored fp16/bf16 instead of float32 compute.")
@click.option("--out", type=click.Path(), default=None, help="Folder for verify.json/.md [default: the model folder].")
def verify(model, targets, contexts, decode_tokens, repeats, keep_dtype, out):
    """Measure MODEL (an MLX folder, or a .gguf through llama.cpp) here; verified only where this machine is the target."""
    if str(model).endswith(".gguf"):
        _verify_gguf(model, targets, contexts, decode_tokens, repeats, out)
        return
    from runtime_mlx.verify import verify as run_verify

    report, path = run_verify(resolve_mlx(model), targets, contexts, decode_tokens, repeats, out, progress=True,
                              keep_dtype=keep_dtype)
    click.echo(f"computed in {report['settings']['compute_dtype']} on {report['device'].get('backend')}")
    for t in report["targets"]:
        worst = t["fits"][-1]
        click.echo(f"{t['target']['name']}: {t['status']}, context {worst['context']}: "
                   f"{'fits' if worst['fits'] else 'does not fit'} "
                   f"({worst['peak_bytes'] / 2**20:,.0f} of {worst['working_set_bytes'] / 2**20:,.0f} MiB)")
    click.echo(f"wrote {path} and {path.with_suffix('.md')}")


def _verify_gguf(model, targets, contexts, decode_tokens, repeats, out) -> None:
    """The llama.cpp branch: same options, measured through the llama.cpp that reads our GGUF files."""
    from convert.gguf_verify import verify_gguf

    report, path = verify_gguf(model, targets, contexts, decode_tokens, repeats, out)
    for r in report["runs"]:
        click.echo(f"llama.cpp @ {r['context']}: prompt {r['prompt_tps']:,.1f} tok/s, "
                   f"decode {r['decode_tps']:,.1f} tok/s")
    click.echo(f"load {report['load_s']:.2f} s, peak RSS {report['peak_rss_bytes'] / 2**20:,.0f} MiB")
    for t in report["targets"]:
        click.echo(f"{t['target']}: {t['status']}")
    click.echo(f"wrote {path} and {path.with_suffix('.md')}")


@click.command("plan", epilog="Example: sentinel plan forged-mlx --target macbook-pro-16gb --context 2048,8192")
@click.argument("model")
@click.option("--target", "targets", default=None,
              help=_target_help("Comma-separated targets [default: macbook-air-8gb,macbook-pro-16gb,"
                                "macbook-pro-32gb]; choose from"))
@click.option("--context", "contexts", type=IntList(1, MAX_CONTEXT), default="2048", show_default=True,
              help="Comma-separated context lengths in tokens.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default=None,
              help="Plan the model as `sentinel convert --dtype` would write it [default: as stored].")
@click.option("--quantize", type=click.Choice(["4", "8"]), default=None,
              help="Plan the model quantized to these bits (MLX affine, group size 64).")
@click.option("--json", "as_json", is_flag=True, help="Print the full plan as JSON.")
def plan(model, targets, contexts, dtype, quantize, as_json):
    """Predict peak memory and decode speed of MODEL (folder or config.json; no weights read) on targets."""
    import json

    from runtime_mlx.planner import plan as make_plan
    from runtime_mlx.targets import get_targets

    result = make_plan(resolve_plan(model), get_targets(targets), contexts, dtype,
                       int(quantize) if quantize else None)
    result["model"] = model  # as given, not the folder an embedded name resolved to
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    f = result["facts"]
    click.echo(f"{f['name']}: weights {f['weight_bytes'] / 2**20:,.1f} MiB ({f['source']}), "
               f"KV {f['kv_bytes_per_token']:,} bytes/token (estimated)")
    for t in result["targets"]:
        for r in t["fits"]:
            c = r["components"]
            click.echo(f"{t['target']['name']} @ {r['context']}: peak {r['predicted_peak_bytes'] / 2**20:,.1f} MiB "
                       f"(weights {c['weights'] / 2**20:,.1f} + KV {c['kv_cache'] / 2**20:,.1f} + activations "
                       f"{c['activations'] / 2**20:,.1f} + overhead {c['overhead'] / 2**20:,.1f}) of "
                       f"{r['working_set_bytes'] / 2**20:,.0f} MiB usable: "
                       f"{'fits' if r['fits'] else 'does not fit'}, margin {r['margin_bytes'] / 2**20:,.0f} MiB; "
                       f"decode <= {r['decode_tps_upper_bound']:,.0f} tok/s (estimated)")


@click.command("card", epilog="Example: sentinel card forged-mlx --report forged/report.json")
@click.argument("model")
@click.option("--report", "report", type=click.Path(), default=None,
              help="Forge report.json [default: one found beside the model].")
def card(model, report):
    """Write MODEL's README.md from the files present: config, forge report, verify.json files."""
    from runtime_mlx.card import write_card
    from runtime_mlx.card_meta import Provenance
    from sentinel.cli.resolve import EMBEDDED

    known = {name: Provenance(spec.upstream or None, spec.license, spec.license_note) for name, spec in EMBEDDED.items()}
    path = write_card(resolve_mlx(model), report, known)
    click.echo(f"wrote {path}")


COMMANDS = [verify, plan, card]
