"""``convert_to_mlx``: a forged or plain HF checkpoint -> an MLX model folder, tensor by tensor.

The output is what stock mlx-lm and runtime_mlx read: sanitized tensor names,
the requested dtype (or MLX affine quantization through ``mx.quantize``),
safetensors shards + index, config.json with the ``sentinel_layout`` block
untouched, tokenizer files, generation config and a short model card. Every
check runs before the first byte is written, and the folder appears only when
complete (sentinel.atomic.atomic_dir).
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from convert.families import family_for
from runtime_mlx.model_card import write_model_card
from convert.tensors import ShardWriter, TensorSpec, materialize, open_tensors, plan_shards, shard_names
from sentinel.atomic import atomic_dir, write_json
from sentinel.config import family_config
from sentinel.errors import LayoutError, SentinelError, os_error
from sentinel.layout import is_pruned, read_layout
from sentinel.paths import mlx_dir
from sentinel.validate import check_config, check_tokenizer_files

DTYPES = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32}
BITS = (4, 6, 8)  # MLX affine quantization (mx.quantize) at these bits
GROUP_SIZES = (32, 64, 128)
MAX_SHARD_BYTES = 5 << 30  # mlx-lm's MAX_FILE_SIZE_GB
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
              "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
              "generation_config.json")


@dataclass
class Plan:
    """Every output tensor with its source, decided before anything is written."""

    specs: list[TensorSpec] = field(default_factory=list)
    sources: dict[str, tuple[str, bool, Any]] = field(default_factory=dict)  # out -> (source, quantize?, dtype)
    unquantized: list[str] = field(default_factory=list)
    params: int = 0


def default_output(src: Path, dtype: str, quantize: int | None) -> Path:
    """``$SENTINEL_HOME/mlx/<name>-<dtype>[-q<bits>]``."""
    return mlx_dir() / (f"{src.name}-{dtype}" + (f"-q{quantize}" if quantize else ""))


def convert_to_mlx(src, out=None, dtype: str = "float16", quantize: int | None = None, group_size: int = 64,
                   force: bool = False, max_shard_bytes: int = MAX_SHARD_BYTES, progress: bool = False) -> Path:
    """Convert the checkpoint folder ``src`` into an MLX folder at ``out``; return ``out``."""
    src = Path(src)
    _check_options(dtype, quantize, group_size)
    config = _read_source_config(src)
    family = family_for(str(config.get("model_type")))
    check_config(config, str(src))  # head counts, sizes, RoPE blocks: types and ranges
    check_tokenizer_files(src)
    layout = read_layout(config)
    tensors = open_tensors(src)
    plan = _plan(family, config, layout, tensors, DTYPES[dtype], quantize, group_size)
    out = Path(out) if out is not None else default_output(src, dtype, quantize)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise SentinelError(f"output {out} would overwrite the input checkpoint; choose another --out")
    mlx_config = _mlx_config(family, config, dtype, quantize, group_size, plan.unquantized)

    try:
        with atomic_dir(out, force=force) as tmp:
            total = _write_shards(tmp, out, family, tensors, plan, quantize, group_size, max_shard_bytes,
                                  progress)
            write_json(tmp / "config.json", mlx_config)
            for name in SIDE_FILES:
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
            write_model_card(tmp / "README.md", src=src, config=mlx_config, layout=layout, params=plan.params,
                             nbytes=total, dtype=dtype, quantize=quantize, group_size=group_size,
                             unquantized=plan.unquantized)
            _open_for_stock_tools(tmp, mlx_config, layout)
    except OSError as e:  # config, side files, rename: the shards report their own file
        raise os_error(e, out) from None
    return out


def _check_options(dtype: str, quantize: int | None, group_size: int) -> None:
    if dtype not in DTYPES:
        raise SentinelError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if quantize is not None:
        if quantize not in BITS:
            raise SentinelError(f"--quantize must be one of {', '.join(map(str, BITS))} bits, got {quantize}")
        if group_size not in GROUP_SIZES:
            raise SentinelError(f"--group-size must be one of {', '.join(map(str, GROUP_SIZES))}, got {group_size}")


def _read_source_config(src: Path) -> dict[str, Any]:
    if not src.exists():
        raise SentinelError(f"input {src} does not exist")
    if not src.is_dir():
        raise SentinelError(f"input {src} is not a model folder")
    return family_config(src)  # one reader; a forged folder's sentinel_<family> reads as its family


def _plan(family, config, layout, tensors: dict[str, mx.array], dtype, quantize, group_size) -> Plan:
    """Map source names to MLX names, check every shape against the layout, size the outputs."""
    expected = family.expected_shapes(config, layout)
    renamed: dict[str, str] = {}
    for name in tensors:
        new = family.mlx_name(name, config)
        if new is None:
            continue
        if new not in expected:
            raise SentinelError(f"unexpected tensor {name} for model_type {config['model_type']}")
        renamed[new] = name
    missing = [n for n in expected if n not in renamed]
    if missing:
        raise SentinelError(f"checkpoint lacks tensor {missing[0]} ({len(missing)} missing)")

    plan = Plan()
    for new, shape in expected.items():
        source = renamed[new]
        array = family.transform(new, tensors[source])
        if tuple(array.shape) != shape:
            raise LayoutError(f"tensor {source} has shape {tuple(array.shape)}, "
                              f"the layout in config.json expects {shape}")
        plan.params += array.size
        floating = mx.issubdtype(array.dtype, mx.floating) and not family.keeps_dtype(new)
        cast = dtype if floating else array.dtype
        if quantize and family.quantizable(new) and array.ndim == 2:
            if shape[-1] % group_size == 0:
                prefix = new[: -len(".weight")]
                groups = (shape[0], shape[-1] // group_size)
                plan.specs += [TensorSpec(new, mx.uint32, (shape[0], shape[-1] * quantize // 32)),
                               TensorSpec(f"{prefix}.scales", cast, groups),
                               TensorSpec(f"{prefix}.biases", cast, groups)]
                plan.sources[new] = (source, True, cast)
                continue
            plan.unquantized.append(new[: -len(".weight")])
        plan.specs.append(TensorSpec(new, cast, shape))
        plan.sources[new] = (source, False, cast)
    return plan


def _write_shards(tmp: Path, out: Path, family, tensors, plan: Plan, quantize, group_size, max_shard_bytes,
                  progress: bool) -> int:
    """Stream every output tensor into its shard; write mlx-lm's index. Returns total bytes."""
    from tqdm import tqdm

    shards = plan_shards(plan.specs, max_shard_bytes)
    names = shard_names(len(shards))
    weight_map: dict[str, str] = {}
    with tqdm(total=len(plan.sources), desc="convert", unit="tensor", disable=not progress) as bar:
        for file_name, specs in zip(names, shards):
            _write_shard(tmp / file_name, out / file_name, specs, family, tensors, plan, quantize, group_size,
                         bar)
            weight_map.update((spec.name, file_name) for spec in specs)
    total = sum(s.nbytes for s in plan.specs)
    index = {"metadata": {"total_size": total, "total_parameters": plan.params},
             "weight_map": dict(sorted(weight_map.items()))}
    write_json(tmp / "model.safetensors.index.json", index)
    return total


def _write_shard(path: Path, label: Path, specs: list[TensorSpec], family, tensors, plan: Plan, quantize,
                 group_size, bar) -> None:
    """Read, cast (or quantize) and write the tensors of one shard, one at a time."""
    writer = ShardWriter(path, specs, label=label)
    for spec in specs:
        if spec.name not in plan.sources:
            continue  # scales/biases: written together with their weight
        source, quantized, dtype = plan.sources[spec.name]
        # pop: an evaluated lazy array keeps its bytes, so holding the dict would hold the model
        cast = family.transform(spec.name, materialize(source, tensors.pop(source))).astype(dtype)
        if quantized:
            w, scales, biases = mx.quantize(cast, group_size=group_size, bits=quantize)
            mx.eval(w, scales, biases)
            prefix = spec.name[: -len(".weight")]
            writer.write(spec.name, w)
            writer.write(f"{prefix}.scales", scales)
            writer.write(f"{prefix}.biases", biases)
        else:
            mx.eval(cast)
            writer.write(spec.name, cast)
        del cast
        bar.update(1)
    writer.close()


def _mlx_config(family, config: dict[str, Any], dtype: str, quantize, group_size,
                unquantized: list[str]) -> dict[str, Any]:
    """Source config (layout block untouched), the dtype actually written, mlx-lm's quantization record."""
    out = family.mlx_config(copy.deepcopy(config))
    out.pop("_name_or_path", None)
    for key in ("dtype", "torch_dtype"):  # say what the folder holds, not what the source held
        if key in out:
            out[key] = dtype
    if quantize:
        record: dict[str, Any] = {"group_size": group_size, "bits": quantize, "mode": "affine"}
        record.update({path: False for path in unquantized})  # mlx-lm's per-path override: keep dense
        out["quantization"] = record
        out["quantization_config"] = copy.deepcopy(record)
    return out


def _open_for_stock_tools(folder: Path, config: dict, layout) -> None:
    """Forged folders get runtime_mlx's ``model_file`` shim, so stock mlx-lm tools open them too."""
    from runtime_mlx.models import FAMILIES
    from runtime_mlx.stock import install_model_file

    if is_pruned(layout) and config.get("model_type") in FAMILIES:
        install_model_file(folder)
