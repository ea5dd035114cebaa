"""``sentinel card``: a model folder's README.md built only from files in hand.

The converter's card (runtime_mlx/model_card.py: size, format, heads kept per
layer) is regenerated from config.json and the safetensors headers, then
followed by the forge numbers (baseline / unpruned control / forged rows of a
report.json) and a "Runs On" table made from the verify*.json reports present.
Nothing is typed by hand: a section whose source file is missing says so.
"""

from __future__ import annotations

import glob
import math
import re
import tempfile
from pathlib import Path
from typing import Any, Optional

from runtime_mlx import planner
from sentinel.atomic import read_json, write_text
from sentinel.errors import SentinelError
from sentinel.layout import read_layout
from sentinel.verdict import verdict

DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def find_report(folder: Path, report: Optional[str | Path] = None) -> Optional[Path]:
    """The forge report: the one given, else report.json in the folder or beside it (forge's <out>/model)."""
    if report is not None:
        path = Path(report)
        if not path.is_file():
            raise SentinelError(f"forge report {path} not found")
        return path
    for candidate in (folder / "report.json", folder.parent / "report.json"):
        if candidate.is_file():
            return candidate
    return None


def verify_reports(folder: Path) -> list[tuple[str, dict]]:
    """Every verify*.json in the folder (e.g. verify.json from here, verify-m4.json copied from a Mac)."""
    out = []
    for path in sorted(glob.glob(str(folder / "verify*.json"))):
        data = read_json(path)
        if not isinstance(data, dict) or "targets" not in data or "device" not in data:
            raise SentinelError(f"{path} is not a sentinel verify report")
        out.append((Path(path).name, data))
    return out


def base_card(folder: Path, config: dict, base_name: str) -> str:
    """The converter's own card text for this folder, recomputed from config + headers."""
    from runtime_mlx.model_card import write_model_card

    facts = planner.model_facts(folder)
    params = sum(math.prod(s) for _, s in planner.config_tensors(config, "F32").values())
    q = config.get("quantization") or {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "README.md"
        write_model_card(path, src=Path(base_name), config=config, layout=read_layout(config), params=params,
                         nbytes=facts.weight_bytes, dtype=DTYPE_NAMES[facts.dtype], quantize=q.get("bits"),
                         group_size=int(q.get("group_size", 64)),
                         unquantized=[k for k, v in q.items() if v is False])
        return path.read_text()


def forge_section(report: Optional[dict], where: Optional[Path]) -> list[str]:
    lines = ["## Forge results", ""]
    if report is None:
        return lines + ["No forge report found beside this folder (pass `--report` to `sentinel card`): "
                        "no quality numbers are claimed.", ""]
    cfg, data = report.get("config", {}), report.get("data", {})
    evald = data.get("eval", {})
    lines += [f"From `{where}`: domain `{cfg.get('domain')}`, criterion `{cfg.get('prune', {}).get('criterion')}`, "
              f"{_goal(cfg)}, {cfg.get('cycles')} cycles; perplexity on "
              f"{evald.get('tokens', '?'):,} held-out tokens ({evald.get('documents', '?')} documents never "
              "trained on).", "",
              "| model | perplexity | params | bytes (fp16) | KV bytes/token (fp16) | query heads | KV heads |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report.get("rows", []):
        lines.append(f"| {r['row']} | {r['ppl']:.3f} | {r['params']:,} | {r['bytes_fp16']:,} | "
                     f"{r['kv_bytes_per_token_fp16']:,} | {r['q_heads_total']} | {r['kv_heads_total']} |")
    said = verdict(report.get("rows", []))
    return lines + ([""] + [f"**Verdict:** {said}"] if said else []) + [""]


def _goal(cfg: dict) -> str:
    target = (cfg.get("prune") or {}).get("target_params")
    return f"target {target:g} of the base parameters" if target is not None else \
        f"target prune level {cfg.get('prune_level')}"


def runs_on_section(reports: list[tuple[str, dict]]) -> list[str]:
    lines = ["## Runs On", ""]
    if not reports:
        return lines + ["Not verified anywhere yet: run `sentinel verify` on this folder.", ""]
    lines += ["*verified*: `sentinel verify` ran on that machine. *estimated*: predicted by the planner from a "
              "run elsewhere (memory) and bandwidth (decode speed is an upper bound).", "",
              "| target | format | status | measured on | largest context checked | peak memory | fits | "
              "decode tok/s | report |", "|---|---|---|---|---:|---:|---|---:|---|"]
    for name, rep in reports:
        d = rep["device"]
        where = f"{d.get('chip')} ({d.get('system')}, {d.get('backend')}), {rep.get('date', '')[:10]}"
        last = rep["measured"]["contexts"][-1]
        lines.append(f"| the measuring machine itself ({d['ram_bytes'] / 2**30:.0f} GiB RAM, MLX {d.get('backend')}) | "
                     f"{rep['format']} | measured | {where} | {last['context']} | "
                     f"{last['peak_bytes'] / 2**20:,.1f} MiB | ran | {last['decode_tps']:.2f} | [{name}]({name}) |")
        for t in rep["targets"]:
            f = t["fits"][-1]
            tgt = t["target"]
            speed = f"{f['decode_tps']:.1f}" + ("" if t["status"] == "verified" else " (bound)")
            lines.append(f"| {tgt['name']} ({tgt.get('chip', '')}, {tgt['ram_gb']:g} GB) | {rep['format']} | "
                         f"{t['status']} | {where} | {f['context']} | {f['peak_bytes'] / 2**20:,.1f} MiB | "
                         f"{'yes' if f['fits'] else 'no'} | {speed} | [{name}]({name}) |")
    return lines + [""]


CONVERTED_FROM = re.compile(r"^Converted by `sentinel convert` from `([^`]+)`", re.M)


def converted_from(folder: Path) -> Optional[str]:
    """The source name the converter wrote into the folder's card, if that card is still there."""
    readme = folder / "README.md"
    found = CONVERTED_FROM.search(readme.read_text(errors="replace")) if readme.is_file() else None
    return found.group(1) if found else None


def card_text(folder: Path, report_path: Optional[Path]) -> str:
    config = read_json(folder / "config.json")
    report = read_json(report_path) if report_path is not None else None
    base = (report or {}).get("config", {}).get("model") or converted_from(folder) or folder.name
    text = base_card(folder, config, base).rstrip() + "\n\n"
    about = [f"Base model: `{base}`" + (f" (forged from `{report['source']}`)." if report else
                                         " (no forge report: provenance as recorded by the converter above)."), ""]
    return text + "\n".join(about + forge_section(report, report_path) + runs_on_section(verify_reports(folder)))


def write_card(model: str | Path, report: Optional[str | Path] = None) -> Path:
    """Regenerate MODEL's README.md (atomically); return its path."""
    from runtime_mlx.loader import check_mlx_folder

    folder = check_mlx_folder(model)
    text = card_text(folder, find_report(folder, report))
    path = folder / "README.md"
    try:
        write_text(path, text)
    except OSError as e:
        raise SentinelError(f"cannot write {path} ({e.strerror or e})") from None
    return path
