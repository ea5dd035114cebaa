"""``convert_to_gguf``: a forged or plain HF checkpoint -> one GGUF file for llama.cpp, Ollama, LM Studio.

Every check (family, RoPE kind, tensor shapes against the layout, tokenizer,
output path) runs before the first byte is written. The header and tensor
table are written from the plan (``gguf.GGUFWriter``'s staged API), then each
tensor is read, rewritten, cast or quantized and appended one at a time, so
memory holds one tensor, not the model. The file is written under a temporary
name beside the target and renamed into place only when complete; an Ollama
Modelfile is written next to it (same stem, ``.Modelfile``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.gguf_arch import ArchPlan, TensorPlan, plan_arch
from convert.gguf_modelfile import read_generation_config, render_modelfile
from convert.gguf_source import open_source
from convert.gguf_vocab import add_tokenizer, pre_tokenizer_name, read_tokenizer
from sentinel.atomic import read_json
from sentinel.errors import SentinelError
from sentinel.layout import is_pruned, read_layout
from sentinel.paths import cache_root

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
Q8_BLOCK = 32


def default_output(src: Path, outtype: str) -> Path:
    """``$SENTINEL_HOME/gguf/<name>-<outtype>.gguf``."""
    return cache_root() / "gguf" / f"{Path(src).name}-{outtype}.gguf"


def modelfile_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(".gguf")] + ".Modelfile")


def convert_to_gguf(src, out=None, outtype: str = "f16", force: bool = False, progress: bool = False) -> Path:
    """Convert the checkpoint folder ``src`` into the GGUF file ``out``; return ``out``."""
    import gguf

    src = Path(src)
    if outtype not in OUTTYPES:
        raise SentinelError(f"unsupported --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    config = _read_config(src)
    layout = read_layout(config)
    tensors = open_source(src)
    plan = plan_arch(config, layout, {name: t.shape for name, t in tensors.items()})
    tok = read_tokenizer(src)
    pre_tokenizer_name(tok)  # refuse an unknown pre-tokenizer before writing
    out = _check_output(src, Path(out) if out is not None else default_output(src, outtype), force)
    kinds = {t.name: ggml_type(t, outtype) for t in plan.tensors}

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, plan.arch)
        _add_metadata(writer, plan, config, layout, outtype, src.name)
        vocab = add_tokenizer(writer, src, tok, plan.vocab)
        for t in plan.tensors:
            _add_info(writer, t, kinds[t.name])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensors(writer, plan, tensors, kinds, progress)
        writer.close()
        _publish(tmp, out)
        _write_text(modelfile_path(out), render_modelfile(out.name, vocab["chat_template"], vocab["eos"],
                                                          read_generation_config(src), plan.context))
    except OSError as e:
        reason = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "cannot write"
        raise SentinelError(f"{reason} while writing {out} ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


def ggml_type(t: TensorPlan, outtype: str):
    """1-D tensors stay F32 (as llama.cpp's own converter keeps them); Q8_0 needs rows in blocks of 32."""
    from gguf import GGMLQuantizationType as Q

    if len(t.shape) == 1 or outtype == "f32":
        return Q.F32
    if outtype == "q8_0":
        return Q.Q8_0 if t.shape[-1] % Q8_BLOCK == 0 else Q.F16
    return {"f16": Q.F16, "bf16": Q.BF16}[outtype]


def _read_config(src: Path) -> dict[str, Any]:
    if not src.exists():
        raise SentinelError(f"input {src} does not exist")
    if not src.is_dir() or not (src / "config.json").is_file():
        raise SentinelError(f"{src} is not a model folder (no config.json)")
    config = read_json(src / "config.json")
    if not isinstance(config, dict):
        raise SentinelError(f"{src / 'config.json'} does not hold a JSON object")
    return config


def _check_output(src: Path, out: Path, force: bool) -> Path:
    if out.suffix != ".gguf":
        raise SentinelError(f"--out must name a .gguf file, got {out}")
    if out.is_dir():
        raise SentinelError(f"output {out} is a folder; give a file name ending in .gguf")
    if src.resolve() in out.resolve().parents:
        raise SentinelError(f"output {out} would be written inside the input checkpoint; choose another --out")
    for path in (out, modelfile_path(out)):
        if path.exists() and not force:
            raise SentinelError(f"output {path} already exists (use --force to replace it)")
    return out


def _add_metadata(writer, plan: ArchPlan, config, layout, outtype: str, name: str) -> None:
    import gguf

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    per_layer = plan.per_layer
    writer.add_name(name)
    writer.add_context_length(plan.context)
    writer.add_embedding_length(plan.hidden)
    writer.add_block_count(len(plan.ff))
    writer.add_feed_forward_length([int(n) for n in plan.ff] if per_layer else int(plan.ff[0]))
    writer.add_head_count([int(n) for n in plan.q_heads] if per_layer else int(plan.q_heads[0]))
    writer.add_head_count_kv([int(n) for n in plan.kv_heads] if per_layer else int(plan.kv_heads[0]))
    # deci's default head size is hidden / head_count(layer 0): wrong once layer 0 is pruned, so say it.
    writer.add_key_length(plan.head_dim)
    writer.add_value_length(plan.head_dim)
    writer.add_rope_dimension_count(plan.head_dim)
    writer.add_rope_freq_base(plan.rope_theta)
    writer.add_layer_norm_rms_eps(plan.rms_eps)
    writer.add_vocab_size(plan.vocab)
    writer.add_file_type(int(ftype))
    if outtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if is_pruned(layout):  # traceability: which original heads/channels each layer kept
        writer.add_string("sentinel.layout", json.dumps(layout.to_dict(), separators=(",", ":")))
        if plan.padded_layers:
            writer.add_array("sentinel.zero_padded_layers", [int(i) for i in plan.padded_layers])


def _add_info(writer, t: TensorPlan, kind) -> None:
    import gguf

    if kind in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        dtype = np.float32 if kind == gguf.GGMLQuantizationType.F32 else np.float16
        writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), int(np.prod(t.shape)) * np.dtype(dtype).itemsize)
    else:
        byte_shape = gguf.quant_shape_to_byte_shape(t.shape, kind)
        writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=kind)


def _write_tensors(writer, plan: ArchPlan, tensors, kinds, progress: bool) -> None:
    import gguf
    from tqdm import tqdm

    for t in tqdm(plan.tensors, desc="gguf", unit="tensor", disable=not progress):
        data = tensors[t.source].load().astype(np.float32, copy=False)
        if t.rewrite is not None:
            data = t.rewrite(data)
        data = np.ascontiguousarray(gguf.quants.quantize(data, kinds[t.name]))
        writer.write_tensor_data(data)
        del data


def _publish(tmp: str, out: Path) -> None:
    """fsync, give the file the permissions of a normal new file, rename into place."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
