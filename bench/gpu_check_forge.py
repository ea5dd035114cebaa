"""GPU check worker: one short forge through the CLI (`python -m sentinel.cli forge`), end to end.

With real weights when they were carried: SmolLM2-135M's GGUF (98 MB, more than one
call carries) travels in parts with a manifest (bench/gpu_check_carry.py); the parts are
checked, joined, checked again by sha256 and dequantized by the same code as
`sentinel models pull`. Without them the forge runs on random weights of SmolLM2-135M's
shape (tiny on a dry run) with a small tokenizer trained here, and says "not carried".

    python -m bench.gpu_check_forge PLAN.json RESULTS.json
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "smollm2-135m.gguf.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def find_manifest(carry_dirs: list[str]) -> Path | None:
    for d in carry_dirs:
        if (Path(d) / MANIFEST).is_file():
            return Path(d) / MANIFEST
    return None


def join_parts(manifest_path: Path, carry_dirs: list[str], out: Path) -> tuple[Path | None, dict]:
    """The joined GGUF (None if a part is missing or a checksum differs) and what was checked."""
    manifest = json.loads(manifest_path.read_text())
    info = {"carried": False, "manifest": manifest, "parts_found": []}
    parts = []
    for part in manifest["parts"]:
        found = next((Path(d) / part["name"] for d in carry_dirs if (Path(d) / part["name"]).is_file()), None)
        if found is None:
            info["reason"] = f"not carried: part {part['name']} missing (each part travels in its own call)"
            return None, info
        if found.stat().st_size != part["size"] or sha256(found) != part["sha256"]:
            info["reason"] = f"part {part['name']} is damaged (size or sha256 differs from the manifest)"
            return None, info
        info["parts_found"].append(str(found))
        parts.append(found)
    with open(out, "wb") as dst:
        for part in parts:
            dst.write(part.read_bytes())
    digest = sha256(out)
    info.update(sha256=digest, sha256_ok=digest == manifest["sha256"], size=out.stat().st_size)
    if not info["sha256_ok"]:
        info["reason"] = "joined file's sha256 differs from the manifest"
        return None, info
    info["carried"] = True
    return out, info


def real_folder(plan: dict, work: Path) -> tuple[Path | None, dict]:
    manifest = find_manifest(plan["carry_dirs"])
    if manifest is None:
        return None, {"carried": False, "reason": f"not carried: no {MANIFEST} in {plan['carry_dirs'] or 'any carry dir'}"}
    gguf, info = join_parts(manifest, plan["carry_dirs"], work / "smollm2-135m.gguf")
    if gguf is None:
        return None, info
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        info.update(carried=False, reason="the gguf package is missing here (carry its wheel, see docs/GPU.md)")
        return None, info
    from bench import gpu_check_api as api

    t0 = time.perf_counter()
    folder = api.dequantize_gguf()(gguf, work / "smollm2-135m", "float32", {"name": "smollm2-135m",
                                                                            "from": info["manifest"].get("source")})
    info["dequantize_s"] = time.perf_counter() - t0
    gguf.unlink()
    return folder, info


def random_folder(plan: dict, work: Path) -> Path:
    """SmolLM2-135M's shape (tiny on a dry run) with random weights and the tests' small tokenizer."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_tokenizer import tiny_tokenizer

    from bench.gpu_check_models import build_model, shape_config

    cfg, _ = shape_config("smollm2-135m", plan["dry_run"])
    tok = tiny_tokenizer()
    cfg.update(vocab_size=len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    folder = work / "random-smollm2-shape"
    build_model(cfg, "cpu").save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def forge_command(plan: dict, folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sentinel.cli", "forge", str(folder), "--out", str(out), "--force",
            "--steps", str(plan["steps"]), "--batch-size", str(plan["batch_size"]), "--seq-len", str(plan["seq_len"]),
            "--train-tokens", str(plan["train_tokens"]), "--eval-tokens", str(plan["eval_tokens"]),
            "--calib-windows", str(plan["calib_windows"]), "--target-params", str(plan["target_params"]),
            "--cycles", "1", "--device", plan["device"]]


def summarize(report: dict) -> dict:
    cycles = report.get("cycles", [])
    return {"rows": [{k: r.get(k) for k in ("row", "ppl", "params")} for r in report.get("rows", [])],
            "tier": report.get("tier"), "device": report.get("device"),
            "train": [{"cycle": c.get("cycle"), **{k: c.get("train", {}).get(k) for k in
                                                  ("precision", "trainable", "tokens", "seconds", "tokens_per_s")}}
                      for c in cycles]}


def main(plan_path: str, out_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    work = Path(plan["work"])
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"status": "failed"}
    out = Path(out_path)

    def save():
        out.write_text(json.dumps(result, indent=1, default=str))

    folder, result["real_weights"] = real_folder(plan, work)
    result["weights"] = "real" if folder is not None else "random"
    if folder is None:
        folder = random_folder(plan, work)
    save()
    cmd = forge_command(plan, folder, work / "forged")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(plan["deadline"] - time.time(), 5))
        rc, tail = proc.returncode, (proc.stdout[-3000:] + proc.stderr[-3000:])
    except subprocess.TimeoutExpired as e:
        rc, tail = None, f"forge stopped at the section deadline: {str(e.stdout or '')[-2000:]}"
    result.update(command=cmd, returncode=rc, wall_s=time.perf_counter() - t0, output_tail=tail)
    report_path = work / "forged" / "report.json"
    if rc == 0 and report_path.is_file():
        result.update(status="ok", report=summarize(json.loads(report_path.read_text())))
    else:
        result.update(status="timeout" if rc is None else "failed",
                      reason="the forge did not finish in time" if rc is None else f"forge exited with {rc}")
    save()


if __name__ == "__main__":
    main(*sys.argv[1:3])
