"""The YAML front matter the Hugging Face Hub reads from a model card, and where its facts come from.

Licence and upstream model id are never guessed: they come from SOURCE.json (written by
``sentinel models pull``) in the folder, beside it or in the forge's source folder, from the
front matter of a card already there (the converter carries the HF folder's card over), or
from the caller (the CLI knows its embedded models). Values are written as JSON strings,
which YAML reads as they are, so no YAML library is needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

LIBRARIES = ("transformers", "mlx", "gguf")
FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)


@dataclass
class Provenance:
    """What the card says about where the model came from."""

    base_model: Optional[str] = None  # the upstream Hub id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
    license: Optional[str] = None  # an SPDX-like id, e.g. apache-2.0
    license_note: str = ""
    sources: list[str] = field(default_factory=list)  # file names the facts came from (for the card text)

    def fill(self, base_model=None, license=None, note="", source="") -> None:
        took = False
        if not self.base_model and isinstance(base_model, str) and "/" in base_model and " " not in base_model:
            self.base_model, took = base_model, True
        if not self.license and isinstance(license, str) and license.strip():
            self.license, took = license.strip().lower(), True
            self.license_note = note if isinstance(note, str) else ""
        if took and source:
            self.sources.append(source)


def front_matter_of(readme: Path) -> dict[str, str]:
    """``key: value`` scalars of a card's front matter (ours are flat), {} without one."""
    try:
        found = FRONT.match(readme.read_text(errors="replace")) if readme.is_file() else None
    except OSError:
        return {}
    out, last = {}, None
    for line in (found.group(1).splitlines() if found else []):
        key, sep, value = line.partition(":")
        if line.startswith("- ") and last is not None:  # a list: its first item stands for the key
            out.setdefault(last, _scalar(line[2:]))
        elif sep and not line.startswith(" "):
            last = key.strip() if not value.strip() else None
            if value.strip():
                out[key.strip()] = _scalar(value)
    return out


def _scalar(text: str) -> str:
    try:
        return str(json.loads(text.strip()))
    except json.JSONDecodeError:
        return text.strip().strip("'\"")


def _source_json(folder: Path) -> dict:
    try:
        data = json.loads((folder / "SOURCE.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def provenance(folders: Iterable[Optional[Path]], given: Optional[Provenance] = None) -> Provenance:
    """Licence and upstream id from the first of ``folders`` that records them (SOURCE.json, then a card)."""
    out = given or Provenance()
    folders = [Path(f) for f in folders if f is not None]
    for folder in folders:
        info = _source_json(folder)
        out.fill(info.get("base_model") or info.get("upstream"), info.get("license"), info.get("license_note", ""),
                 "SOURCE.json")
    for folder in folders:
        meta = front_matter_of(folder / "README.md")
        license = meta.get("license")
        out.fill(meta.get("base_model"), None if license == "other" else license, "", "model card")
    return out


def recorded_sources(folder: Path) -> tuple[list[Path], list[str]]:
    """Source folders and model names the run that made ``folder`` recorded: the forge's report.json
    (in or beside it) and ``sentinel prune``'s prune_report.json (in it)."""
    paths, names = [], []
    for report in (folder / "report.json", folder.parent / "report.json", folder / "prune_report.json"):
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        if isinstance(data.get("source"), str) and data["source"]:
            paths.append(Path(data["source"]))
        names += [n for n in (data.get("model"), config.get("model")) if isinstance(n, str) and n]
    return paths, [Path(n).name for n in names] + [p.name for p in paths]


def front_matter(prov: Provenance, library: str, tags: Iterable[str]) -> str:
    """The ``---`` block: license, base_model, pipeline_tag, library_name, tags."""
    if library not in LIBRARIES:
        raise ValueError(f"library {library!r} not one of {LIBRARIES}")
    lines = ["---", f"license: {json.dumps(prov.license or 'other')}"]
    if not prov.license:
        lines.append('license_name: "not recorded"')
    if prov.base_model:
        lines += ["base_model:", f"- {json.dumps(prov.base_model)}"]  # the Hub infers the relation
    lines += ['pipeline_tag: "text-generation"', f"library_name: {json.dumps(library)}", "tags:"]
    seen = []
    for tag in ("sentinel", *tags, library):
        tag = str(tag).strip().lower()
        if tag and tag not in seen:
            seen.append(tag)
    lines += [f"- {json.dumps(tag)}" for tag in seen]
    return "\n".join(lines + ["---", ""])
