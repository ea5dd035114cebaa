"""The schema of gpu_check.json and a small validator for it (a JSON-Schema subset; no extra dependency).

Supported keywords: ``type`` (a name or a list of names), ``properties``, ``required``,
``items``, ``enum``, ``values`` (schema of every value of an object with free keys).
docs/GPU.md prints this schema (bench/gpu_check_tables.py), so the two cannot drift.
"""

from __future__ import annotations

NUM = ["number", "null"]
STATUS = {"type": "string", "enum": ["ok", "failed", "skipped", "timeout", "oom", "incomplete", "pending"]}

STAGE = {"type": "object", "required": ["status"], "properties": {
    "status": STATUS, "reason": {"type": ["string", "null"]}, "seconds": {"type": "number"},
    "tokens": {"type": "integer"}, "tokens_per_s": {"type": "number"}, "peak_bytes": {"type": ["integer", "null"]},
    "resident_bytes_before": {"type": ["integer", "null"]}, "precision": {"type": "string"},
    "trainable": {"type": "string"}, "losses_finite": {"type": ["boolean", "null"]}}}

RUN = {"type": "object", "required": ["shape", "mode", "status"], "properties": {
    "shape": {"type": "string"}, "mode": {"type": "string", "enum": ["full", "lora", "nf4"]}, "status": STATUS,
    "reason": {"type": ["string", "null"]}, "params": {"type": "integer"}, "full_params": {"type": "integer"},
    "config": {"type": "object"}, "shape_facts": {"type": "object"},
    "stages": {"type": "object", "values": STAGE,
               "properties": {s: STAGE for s in ("eval", "stage0", "prune", "blocklocal", "distill", "control",
                                                  "save")}}}}

SECTION = {"type": "object", "required": ["status"],
           "properties": {"status": STATUS, "reason": {"type": ["string", "null"]}, "seconds": {"type": "number"},
                          "budget_s": {"type": "number"}}}

SCHEMA = {"type": "object", "required": ["schema", "mode", "complete", "started_at", "budget_s", "wall_s", "env",
                                         "forge_defaults", "sections", "estimates", "tiers", "schema_errors"],
          "properties": {
    "schema": {"type": "string", "enum": ["sentinel-gpu-check/1"]},
    "mode": {"type": "string", "enum": ["gpu", "dry-run"]},
    "complete": {"type": "boolean"}, "started_at": {"type": "string"}, "budget_s": {"type": "number"},
    "wall_s": {"type": "number"},
    "env": {"type": ["object", "null"], "required": ["python", "versions", "cuda_available", "device_name",
                                           "gpu_memory_bytes"],
            "properties": {"python": {"type": "string"}, "versions": {"type": "object"},
                           "cuda_available": {"type": "boolean"}, "device_name": {"type": ["string", "null"]},
                           "gpu_memory_bytes": {"type": ["integer", "null"]}}},
    "forge_defaults": {"type": ["object", "null"], "required": ["steps", "batch_size", "seq_len", "eval_tokens",
                                                      "calib_windows", "target_params", "cycles"]},
    "sections": {"type": "object", "required": ["tests", "stages", "forge"], "properties": {
        "tests": {**SECTION, "properties": {**SECTION["properties"], "counts": {"type": ["object", "null"]},
                                            "cases": {"type": "array", "items": {
                                                "type": "object", "required": ["name", "outcome"]}}}},
        "stages": {**SECTION, "properties": {**SECTION["properties"], "runs": {"type": "array", "items": RUN}}},
        "forge": {**SECTION, "properties": {**SECTION["properties"],
                                            "weights": {"type": "string", "enum": ["real", "random"]},
                                            "real_weights": {"type": "object", "required": ["carried"]},
                                            "wall_s": {"type": "number"},
                                            "report": {"type": "object", "required": ["rows", "tier"]}}}}},
    "estimates": {"type": ["object", "null"], "values": {"type": "object", "values": {
        "type": "object", "required": ["distill_tokens_per_s", "default_forge"],
        "properties": {"distill_tokens_per_s": {"type": NUM},
                       "default_forge": {"type": ["object", "null"], "required": ["seconds", "parts"]}}}}},
    "tiers": {"type": ["object", "null"], "required": ["margin", "peak_bytes", "by_gpu"],
              "properties": {"by_gpu": {"type": "array", "items": {"type": "object", "required": ["gpu_gib", "models"]}}}},
    "schema_errors": {"type": "array", "items": {"type": "string"}}}}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def validate(value, schema: dict, path: str = "$") -> list[str]:
    """Every place where ``value`` breaks ``schema``, as 'path: what is wrong' lines (empty = valid)."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    errors = []
    if isinstance(value, dict):
        errors += [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        props = schema.get("properties", {})
        for key, item in value.items():
            sub = props.get(key, schema.get("values"))
            if sub is not None:
                errors += validate(item, sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors
