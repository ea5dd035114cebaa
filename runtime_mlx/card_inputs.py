"""What ``sentinel card`` reads, checked before a line of the card is written.

A forge report and verify reports each get one ``SentinelError`` line naming the file and
the first problem (the weights against config + layout: sentinel.weight_check), so a malformed input never becomes a traceback or a
card with numbers it cannot back. Non-finite measurements are kept as None ("not measured").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

from sentinel.atomic import read_json
from sentinel.errors import SentinelError

ROW_INTS = ("params", "bytes_fp16", "kv_bytes_per_token_fp16", "q_heads_total", "kv_heads_total")
ROW_MEASURES = ("bpb", "ppl")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _measure(value: Any, where: str) -> Optional[float]:
    """A bpb/PPL value: a positive number, or None when absent or not finite (NaN/inf: not measured)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SentinelError(f"{where} must be a number, got {str(value)[:40]!r}")
    return float(value) if math.isfinite(value) and value > 0 else None


def _row(row: Any, i: int, where: str) -> dict:
    if not isinstance(row, dict):
        raise SentinelError(f"{where}: rows[{i}] must be an object, not {type(row).__name__}")
    if not isinstance(row.get("row"), str) or not row["row"]:
        raise SentinelError(f"{where}: rows[{i}] has no 'row' name")
    missing = [k for k in ROW_INTS if not _is_int(row.get(k))]
    if missing:
        raise SentinelError(f"{where}: rows[{i}] ({row['row']}) needs a non-negative integer '{missing[0]}'")
    out = {**row, **{k: _measure(row.get(k), f"{where}: rows[{i}].{k}") for k in ROW_MEASURES}}
    if out["bpb"] is None and out["ppl"] is None and any(k in row for k in ROW_MEASURES):
        out["not_measured"] = True
    elif all(k not in row for k in ROW_MEASURES):
        raise SentinelError(f"{where}: rows[{i}] ({row['row']}) has neither 'bpb' nor 'ppl'")
    return out


def _object(value: Any, what: str, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SentinelError(f"{where}: '{what}' must be an object, not {type(value).__name__}")
    return value


def load_report(path: Path) -> dict:
    """report.json as the card uses it: rows checked, non-finite measures set to None."""
    data = read_json(path)
    where = str(path)
    if not isinstance(data, dict):
        raise SentinelError(f"{where} is not a forge report (a JSON object with 'rows'), it holds a "
                            f"{type(data).__name__}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise SentinelError(f"{where} has no result rows ('rows'): not a finished forge report, the card "
                            "was left as it was")
    config = _object(data.get("config"), "config", where)
    prune = _object(config.get("prune"), "config.prune", where)
    evald = _object(_object(data.get("data"), "data", where).get("eval"), "data.eval", where)
    for key, value in (("config.prune.target_params", prune.get("target_params")),
                       ("config.prune_level", config.get("prune_level"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise SentinelError(f"{where}: '{key}' must be a number, got {str(value)[:40]!r}")
    for key in ("tokens", "documents"):
        if evald.get(key) is not None and not _is_int(evald[key]):
            raise SentinelError(f"{where}: 'data.eval.{key}' must be a non-negative integer")
    for key in ("source", "domain", "model"):
        value = data.get(key) if key == "source" else config.get(key)
        if value is not None and not isinstance(value, str):
            raise SentinelError(f"{where}: '{key}' must be a string")
    return {**data, "config": config, "rows": [_row(r, i, where) for i, r in enumerate(rows)],
            "eval": evald, "prune": prune}


VERIFY_KEYS = {"device": dict, "measured": dict, "targets": list, "format": str}


def load_verify(path: Path) -> dict:
    """One verify*.json, with the fields the Runs On table prints."""
    data = read_json(path)
    if not isinstance(data, dict) or "targets" not in data or "device" not in data:
        raise SentinelError(f"{path} is not a sentinel verify report")
    for key, kind in VERIFY_KEYS.items():
        if not isinstance(data.get(key), kind):
            raise SentinelError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    contexts = data["measured"].get("contexts")
    if not isinstance(contexts, list) or not contexts or not all(
            isinstance(c, dict) and _is_int(c.get("context")) and _finite(c.get("peak_bytes"))
            and _finite(c.get("decode_tps")) for c in contexts):
        raise SentinelError(f"{path}: 'measured.contexts' must list measured contexts (context, peak_bytes, "
                            "decode_tps)")
    if not _finite(data["device"].get("ram_bytes")):
        raise SentinelError(f"{path}: 'device.ram_bytes' is missing")
    for i, t in enumerate(data["targets"]):
        fits = t.get("fits") if isinstance(t, dict) else None
        target = t.get("target") if isinstance(t, dict) else None
        if not (isinstance(fits, list) and fits and isinstance(target, dict) and isinstance(target.get("name"), str)
                and _finite(target.get("ram_gb")) and all(isinstance(f, dict) and _finite(f.get("decode_tps"))
                                                          and _finite(f.get("peak_bytes")) for f in fits)):
            raise SentinelError(f"{path}: targets[{i}] is incomplete (target name/ram_gb, fits with "
                                "decode_tps and peak_bytes)")
    return data


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

