"""``convert_to_gguf``: a forged or plain HF checkpoint -> one GGUF file for llama.cpp, Ollama, LM Studio.

Every check (family, RoPE kind, tensor shapes against the layout, tokenizer,
output path) runs before the first byte is written. The header and tensor
table are written from the plan (``gguf.GGUFWriter``'s staged API), then each
tensor is read, rewritten, cast or quantized and appended one at a time, so
memory holds one tensor, not the model. The GGUF and its Ollama Modelfile (same
stem, ``.Modelfile``) are written under temporary names and published together
(convert.gguf_output); ``general.*`` comes from convert.gguf_meta.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convert.gguf_arch import ArchPlan, TensorPlan, plan_arch
from convert.gguf_meta import license_text, load_metadata
from convert.gguf_modelfile import read_generation_config, render_modelfile
from convert.gguf_output import check_output, gguf_outputs, modelfile_path  # noqa: F401 - modelfile_path: API
from convert.gguf_source import open_source
from convert.gguf_vocab import add_tokenizer, pre_tokenizer_name, read_tokenizer
from sentinel.errors import SentinelError
from sentinel.layout import is_pruned, read_layout
from sentinel.paths import cache_root
from sentinel.remote_code import base_config
from sentinel.validate import check_model_folder, check_tokenizer_files

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
Q8_BLOCK = 32
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def default_output(src: Path, outtype: str) -> Path:
    """``$SENTINEL_HOME/gguf/<name>-<outtype>.gguf``."""
    return cache_root() / "gguf" / f"{Path(src).name}-{outtype}.gguf"


def convert_to_gguf(src, out=None, outtype: str = "f16", force: bool = False, progress: bool = False) -> Path:
    """Convert the checkpoint folder ``src`` into the GGUF file ``out``; return ``out``."""
    import gguf

    src = Path(src)
    if outtype not in OUTTYPES:
        raise SentinelError(f"unsupported --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    folder = check_model_folder(src)  # config values, layout, safetensors headers
    config = base_config(folder.config)  # a forged folder's sentinel_<family> read as its family
    layout = read_layout(config)
    check_tokenizer_files(src)
    tensors = open_source(src)
    plan = plan_arch(config, layout, {name: t.shape for name, t in tensors.items()})
    _check_dtypes(plan, tensors)
    tok = read_tokenizer(src)
    pre_tokenizer_name(tok)  # refuse an unknown pre-tokenizer before writing
    meta = load_metadata(src, sum(int(np.prod(t.shape)) for t in plan.tensors), is_pruned(layout))
    out = check_output(src, Path(out) if out is not None else default_output(src, outtype), force)
    kinds = {t.name: ggml_type(t, outtype) for t in plan.tensors}

    with gguf_outputs(out) as tmp:
        writer = gguf.GGUFWriter(tmp.gguf, plan.arch)
        meta.set_gguf_meta_model(writer)
        _add_metadata(writer, plan, config, layout, outtype)
        vocab = add_tokenizer(writer, src, tok, plan.vocab)
        for t in plan.tensors:
            _add_info(writer, t, kinds[t.name])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensors(writer, plan, tensors, kinds, progress)
        writer.close()
        tmp.modelfile.write_text(render_modelfile(out.name, vocab["chat_template"], vocab["eos"],
                                                  read_generation_config(src), plan.context,
                                                  license_text(src, meta)))
    return out


def _check_dtypes(plan: ArchPlan, tensors) -> None:
    """Integer tensors are quantized weights whose scales are not part of this format: refuse them."""
    for t in plan.tensors:
        dtype = tensors[t.source].dtype
        if dtype not in FLOAT_DTYPES:
            raise SentinelError(f"tensor {t.source} is stored as {dtype} (quantized weights without their "
                                "scales?); the GGUF converter needs float weights (F32, F16, BF16)")


def ggml_type(t: TensorPlan, outtype: str):
    """1-D tensors stay F32 (as llama.cpp's own converter keeps them); Q8_0 needs rows in blocks of 32."""
    from gguf import GGMLQuantizationType as Q

    if len(t.shape) == 1 or outtype == "f32":
        return Q.F32
    if outtype == "q8_0":
        return Q.Q8_0 if t.shape[-1] % Q8_BLOCK == 0 else Q.F16
    return {"f16": Q.F16, "bf16": Q.BF16}[outtype]


def _add_metadata(writer, plan: ArchPlan, config, layout, outtype: str) -> None:
    import gguf

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    per_layer = plan.per_layer
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
