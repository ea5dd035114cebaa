"""``sentinel card``: a model folder's README.md built only from files in hand.

Front matter the Hub parses (card_meta.py), the fixed part (model_card.py: size, format,
heads kept per layer, how to load it) recomputed from config.json and the safetensors
headers, the forge's three rows (baseline / unpruned control / forged, in bits per byte
when the report has it, PPL beside it) with the verdict, and a "Runs On" table from the
verify*.json reports present. Nothing is typed by hand: a section whose source file is
missing says so, and every input is checked first (card_inputs.py). Works on forged HF
folders (library transformers) and MLX folders (library mlx).
"""

from __future__ import annotations

import glob
import json
import math
import re
import struct
from pathlib import Path
from typing import Mapping, Optional

from runtime_mlx import planner
from runtime_mlx.card_inputs import load_report, load_verify
from runtime_mlx.card_meta import Provenance, front_matter, provenance, recorded_sources
from runtime_mlx.model_card import converted_origin, model_card_text
from sentinel.atomic import read_json, write_text
from sentinel.errors import SentinelError
from sentinel.layout import is_pruned, read_layout
from sentinel.remote_code import base_config
from sentinel.verdict import verdict
from sentinel.weight_check import check_weights_match

DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
CONVERTED_FROM = re.compile(r"^Converted by `sentinel convert` from `([^`]+)`", re.M)


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
    return [(Path(p).name, load_verify(Path(p))) for p in sorted(glob.glob(str(folder / "verify*.json")))]


def library_of(folder: Path) -> str:
    """'mlx' or 'transformers': who wrote the weights (safetensors metadata), else which model file is there."""
    from sentinel.weights import weight_files

    try:
        with open(weight_files(folder)[0], "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(min(n, 100 * 2**20))).get("__metadata__") or {}
    except (OSError, ValueError, IndexError, struct.error, AttributeError):
        meta = {}
    if meta.get("format") in ("mlx", "pt"):  # what safetensors writers record (torch's save_file: "pt")
        return "mlx" if meta["format"] == "mlx" else "transformers"
    return "transformers" if (folder / "modeling_sentinel.py").is_file() else "mlx"


def _measure(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "not measured" if value is None else format(value, fmt)


def quality_section(report: Optional[dict], report_name: str) -> list[str]:
    lines = ["## Forge results", ""]
    if report is None:
        return lines + ["No forge report found beside this folder (pass `--report` to `sentinel card`): "
                        "no quality numbers are claimed.", ""]
    cfg, evald, rows = report["config"], report["eval"], report["rows"]
    bpb = any(r.get("bpb") is not None for r in rows)
    tokens = f"{evald['tokens']:,}" if evald.get("tokens") is not None else "an unrecorded number of"
    documents = evald.get("documents")
    lines += [f"From `{report_name}`: domain `{cfg.get('domain')}`, criterion `{report['prune'].get('criterion')}`, "
              f"{_goal(cfg, report['prune'])}, {_count(cfg.get('cycles'), 'cycle')}; measured on {tokens} held-out "
              f"tokens" + (f" ({_count(documents, 'document')} never trained on)." if documents is not None else "."),
              ""]
    head = ("| model | bits per byte | perplexity |" if bpb else "| model | perplexity |")
    lines += [head + " params | bytes (fp16) | KV bytes/token (fp16) | query heads | KV heads |",
              "|---|" + ("---:|" * (7 if bpb else 6))]
    for r in rows:
        measures = ([_measure(r, "bpb", ".4f")] if bpb else []) + [_measure(r, "ppl", ".3f")]
        lines.append(f"| {r['row']} | " + " | ".join(measures) + f" | {r['params']:,} | {r['bytes_fp16']:,} | "
                     f"{r['kv_bytes_per_token_fp16']:,} | {r['q_heads_total']} | {r['kv_heads_total']} |")
    said = verdict(rows)
    if said and not any(ch in said for ch in ("nan", "inf")):
        return lines + ["", f"**Verdict:** {said}", ""]
    return lines + ["", "**Verdict:** not computed (a row's quality was not measured).", ""]


def _count(n, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s") if isinstance(n, int) else f"? {word}s"


def _goal(cfg: dict, prune: dict) -> str:
    target = prune.get("target_params")
    if target is not None:
        return f"target {target:g} of the base parameters"
    level = cfg.get("prune_level")
    return f"target prune level {level:g}" if isinstance(level, (int, float)) else "no size target recorded"


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
        where = f"{d.get('chip')} ({d.get('system')}, {d.get('backend')}), {str(rep.get('date', ''))[:10]}"
        last = rep["measured"]["contexts"][-1]
        lines.append(f"| the measuring machine itself ({d['ram_bytes'] / 2**30:.0f} GiB RAM, MLX {d.get('backend')}) | "
                     f"{rep['format']} | measured | {where} | {last['context']} | "
                     f"{last['peak_bytes'] / 2**20:,.1f} MiB | ran | {last['decode_tps']:.2f} | [{name}]({name}) |")
        for t in rep["targets"]:
            f, tgt = t["fits"][-1], t["target"]
            speed = f"{f['decode_tps']:.1f}" + ("" if t.get("status") == "verified" else " (bound)")
            lines.append(f"| {tgt['name']} ({tgt.get('chip', '')}, {tgt['ram_gb']:g} GB) | {rep['format']} | "
                         f"{t.get('status')} | {where} | {f.get('context')} | {f['peak_bytes'] / 2**20:,.1f} MiB | "
                         f"{'yes' if f.get('fits') else 'no'} | {speed} | [{name}]({name}) |")
    return lines + [""]


def converted_from(folder: Path) -> Optional[str]:
    """The source name the converter wrote into the folder's card, if that card is still there."""
    readme = folder / "README.md"
    found = CONVERTED_FROM.search(readme.read_text(errors="replace")) if readme.is_file() else None
    return found.group(1) if found else None


def _known(names: list[str], known: Mapping[str, Provenance]) -> Optional[Provenance]:
    """The caller's record for the first name that is, or starts with, a known model (smollm2-135m-float16)."""
    for n in names:
        for key, prov in known.items():
            if n == key or n.startswith(key + "-"):
                return Provenance(prov.base_model, prov.license, prov.license_note, ["Sentinel's catalogue"])
    return None


def card_text(folder: Path, report_path: Optional[Path], known: Mapping[str, Provenance] = {}) -> str:
    """The whole README.md; every input checked before anything is composed. ``known``: model name ->
    provenance the caller knows (the CLI's embedded models), used after the files on disk."""
    config = read_json(folder / "config.json")
    check_weights_match(folder, config)  # headers only: weights of another model get no card
    config = base_config(config)  # a forged HF folder says sentinel_<family>: describe the family
    report = load_report(report_path) if report_path is not None else None
    reports = verify_reports(folder)
    library, layout = library_of(folder), read_layout(config)
    source = Path(report["source"]) if report and report.get("source") else None
    name = (report or {}).get("config", {}).get("model") or converted_from(folder) or folder.name
    name = Path(str(name)).name  # a name, never a machine path
    paths, names = recorded_sources(folder)
    prov = provenance([folder, folder.parent, source, *paths])
    hint = _known([name, folder.name, folder.parent.name] + ([source.name] if source else []) + names, known)
    if hint is not None:
        prov.fill(hint.base_model, hint.license, hint.license_note, "Sentinel's catalogue")
    facts = planner.model_facts(folder)
    q = config.get("quantization") or {}
    tags = (["pruned"] if is_pruned(layout) else []) + (["forged", report["config"].get("domain")] if report else [])
    origin = converted_origin(name, config) if converted_from(folder) else \
        (f"Forged by Sentinel from `{name}` ({config.get('model_type')})." if report or is_pruned(layout) else
         f"`{name}` ({config.get('model_type')}).")
    text = front_matter(prov, library, [t for t in tags if t]) + "\n" + model_card_text(
        name=name, origin=origin, config=config, layout=layout,
        params=sum(math.prod(s) for _, s in planner.config_tensors(config, "F32").values()),
        nbytes=facts.weight_bytes, dtype=DTYPE_NAMES.get(facts.dtype, facts.dtype), quantize=q.get("bits"),
        group_size=int(q.get("group_size", 64)), unquantized=[k for k, v in q.items() if v is False], library=library)
    about = [(f"Base model: `{prov.base_model}`" if prov.base_model else "Base model: not recorded")
             + (f" ({prov.license_note})." if prov.license_note else ".") + " "
             + (f"Licence: `{prov.license}`." if prov.license else "Licence: not recorded (no SOURCE.json beside "
                "the model or its forge source)."), ""]
    return text.rstrip() + "\n\n" + "\n".join(about + quality_section(report, report_path.name if report_path else "")
                                              + runs_on_section(reports))


def write_card(folder: str | Path, report: Optional[str | Path] = None,
               known: Mapping[str, Provenance] = {}) -> Path:
    """Regenerate the folder's README.md (atomically) from checked inputs; return its path."""
    from runtime_mlx.loader import check_mlx_folder

    folder = check_mlx_folder(folder)
    text = card_text(folder, find_report(folder, report), known)
    path = folder / "README.md"
    try:
        write_text(path, text)
    except OSError as e:
        raise SentinelError(f"cannot write {path} ({e.strerror or e})") from None
    return path


def gguf_card_text(src: Path, gguf_name: str, outtype: str, nbytes: int,
                   known: Mapping[str, Provenance] = {}) -> str:
    """The card for a GGUF converted from the HF folder ``src`` (for the GGUF writer to publish beside it):
    front matter with library gguf, the fixed part, and the forge rows when ``src``'s forge report is there."""
    config = base_config(read_json(src / "config.json"))
    layout = read_layout(config)
    report_path = find_report(src)
    report = load_report(report_path) if report_path is not None else None
    source = Path(report["source"]) if report and report.get("source") else None
    name = Path(str((report or {}).get("config", {}).get("model") or src.name)).name
    paths, names = recorded_sources(src)
    prov = provenance([src, src.parent, source, *paths])
    hint = _known([name, src.name] + ([source.name] if source else []) + names, known)
    if hint is not None:
        prov.fill(hint.base_model, hint.license, hint.license_note, "Sentinel's catalogue")
    tags = ["gguf"] + (["pruned"] if is_pruned(layout) else []) + (["forged", report["config"].get("domain")]
                                                                   if report else [])
    body = model_card_text(
        name=Path(gguf_name).stem, origin=f"Converted by `sentinel convert --to gguf` ({outtype}) from `{name}` "
        f"({config.get('model_type')}); the Modelfile beside it is for Ollama.", config=config, layout=layout,
        params=sum(math.prod(s) for _, s in planner.config_tensors(config, "F32").values()), nbytes=nbytes,
        dtype=outtype, quantize=None, group_size=0, unquantized=[], library="gguf")
    about = [(f"Base model: `{prov.base_model}`." if prov.base_model else "Base model: not recorded.") + " "
             + (f"Licence: `{prov.license}`." if prov.license else "Licence: not recorded."), ""]
    return (front_matter(prov, "gguf", [t for t in tags if t]) + "\n" + body.rstrip() + "\n\n"
            + "\n".join(about + quality_section(report, report_path.name if report_path else "")))
