"""The GGUF's ``general.*`` block (name, license, base model, size label, tags) from what the folder knows.

Read through the ``gguf`` package's own helper (``gguf.metadata.Metadata.load``:
the model card's YAML front matter, config.json, the folder name), then filled in
from SOURCE.json, which records the licence and origin of a pulled model, and
finally written with ``Metadata.set_gguf_meta_model`` (the writer's add_* calls).
The same licence goes into the Modelfile's LICENSE line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentinel.errors import SentinelError

LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def source_info(folder: Path) -> dict[str, Any]:
    """SOURCE.json (written by ``models pull``), or {} when absent; refused when present but broken."""
    path = folder / "SOURCE.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SentinelError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SentinelError(f"{path} must hold a JSON object, not a {type(data).__name__}")
    return data


def load_metadata(folder: Path, params: int, layout_pruned: bool):
    """A ``gguf.metadata.Metadata`` for the folder, checked before anything is written."""
    import gguf
    from gguf.metadata import Metadata

    try:
        meta = Metadata.load(None, folder, None, params)
    except Exception as e:  # noqa: BLE001 - yaml/heuristics errors all mean a malformed model card
        raise SentinelError(f"{folder / 'README.md'}: cannot read its metadata block ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    info = source_info(folder)
    meta.name = meta.name or folder.name
    if not meta.license and isinstance(info.get("license"), str):
        meta.license = info["license"].lower()
    base = info.get("base_model") or info.get("upstream")
    if not meta.base_models and isinstance(base, str):
        meta.base_models = [{"name": base.split("/")[-1], "organization": base.split("/")[0] if "/" in base
                             else None, "repo_url": f"https://huggingface.co/{base}"}]
    if meta.size_label is None and params > 0:
        meta.size_label = gguf.size_label(params, 0, 0, 0)
    if layout_pruned:
        meta.tags = sorted(set(meta.tags or []) | {"pruned", "sentinel"})
    for key in ("name", "license", "size_label"):
        value = getattr(meta, key)
        if value is not None and not isinstance(value, (str, list)):
            setattr(meta, key, str(value))
    return meta


def license_text(folder: Path, meta) -> str | None:
    """What the Modelfile's LICENSE says: the folder's LICENSE file, else the licence identifier."""
    for name in LICENSE_FILES:
        path = folder / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if text and '"""' not in text:
                return text
    value = meta.license
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return value or None
