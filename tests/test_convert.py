"""convert_to_mlx on tiny models: MLX logits equal torch logits, plain and forged, every dtype and quantization."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from convert import convert_to_mlx, default_output, verify_conversion
from forge_cuda.checkpoint import save_model
from forge_cuda.pruning.defrag import defrag, model_layout
from sentinel.cli import main
from sentinel.layout import LayerHeads
from tiny import forge_tiny, tiny_model, tokens

FAMILIES = ["llama", "qwen2", "qwen3"]
# Layer 0 keeps 4 of 8 query heads (o_proj input 64), layer 1 drops KV head 1 and keeps 6 heads
# (o_proj input 96: not divisible by 64, the quantization fallback), layer 2 stays whole.
def make_checkpoint(tmp_path: Path, family: str, forged: bool, **overrides):
    """(torch model, folder): a tiny random model, sliced to PRUNED when forged, saved as safetensors."""
    model = tiny_model(family, **overrides)
    if forged:
        folder = save_model(forge_tiny(model), tmp_path / f"{family}-forged")
    else:
        folder = tmp_path / f"{family}-plain"
        model.save_pretrained(folder)
    return model, folder


def torch_logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(x).logits.numpy()


def mlx_logits(model, x) -> np.ndarray:
    return np.array(model(mx.array(x.numpy())).astype(mx.float32))


def runtime_model(folder):
    from runtime_mlx import load_model

    return load_model(folder)


@pytest.mark.parametrize("forged", [False, True], ids=["plain", "forged"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_logits_match_torch(family, forged, tmp_path):
    model, src = make_checkpoint(tmp_path, family, forged)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    x = tokens()
    want = torch_logits(model, x)
    assert np.abs(mlx_logits(runtime_model(out), x) - want).max() <= 1e-4
    # Stock mlx-lm reads the same folder when unpruned; its qwen2 ignores config head_dim (16 here, not 64/8).
    if not forged and family != "qwen2":
        from mlx_lm.utils import load_model

        stock, _ = load_model(out)
        assert np.abs(mlx_logits(stock, x) - want).max() <= 1e-4

    config = json.loads((out / "config.json").read_text())
    source = json.loads((src / "config.json").read_text())
    assert config.get("sentinel_layout") == source.get("sentinel_layout")
    assert (config.get("sentinel_layout") is not None) == forged
    assert "quantization" not in config
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_parameters"] == sum(p.numel() for p in model.parameters())
    weights = mx.load(str(out / "model.safetensors"))
    assert set(index["weight_map"]) == set(weights)
    assert all(w.dtype == mx.float32 for w in weights.values())
    card = (out / "README.md").read_text()
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card
    assert ("| 1 | 6/8 | 3/4 |" in card) == forged


def test_tied_embeddings_drop_lm_head(tmp_path):
    model, src = make_checkpoint(tmp_path, "llama", True, tie_word_embeddings=True)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    assert "lm_head.weight" not in mx.load(str(out / "model.safetensors"))
    x = tokens()
    assert np.abs(mlx_logits(runtime_model(out), x) - torch_logits(model, x)).max() <= 1e-4


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 1e-1)])
def test_half_dtypes(dtype, tol, tmp_path):
    model, src = make_checkpoint(tmp_path, "qwen2", True)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype=dtype)
    weights = mx.load(str(out / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {getattr(mx, dtype)}
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype  # not the source's float32
    reference = torch_logits(model.to(getattr(torch, dtype)).float(), tokens())  # same rounded weights
    assert np.abs(mlx_logits(runtime_model(out), tokens()) - reference).max() <= tol


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_equals_mx_quantize_with_dense_fallback(bits, tmp_path):
    model, src = make_checkpoint(tmp_path, "llama", True)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32", quantize=bits, group_size=64)
    weights = mx.load(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    # o_proj of layer 1 (6 heads * 16 = 96 inputs) and every down_proj (96 inputs) stay dense.
    dense = {"model.layers.1.self_attn.o_proj"} | {f"model.layers.{i}.mlp.down_proj" for i in range(3)}
    assert {k for k, v in config["quantization"].items() if v is False} == dense
    assert config["quantization"]["bits"] == bits and config["quantization"]["group_size"] == 64
    assert config["quantization_config"] == config["quantization"]
    source = dict(model.state_dict())
    quantized = 0
    for name, tensor in source.items():
        prefix = name[: -len(".weight")]
        if f"{prefix}.scales" in weights:
            w, s, b = mx.quantize(mx.array(tensor.numpy()), group_size=64, bits=bits)
            assert mx.array_equal(weights[name], w) and mx.array_equal(weights[f"{prefix}.scales"], s)
            assert mx.array_equal(weights[f"{prefix}.biases"], b)
            source[name] = torch.from_numpy(np.array(mx.dequantize(w, s, b, group_size=64, bits=bits)))
            quantized += 1
        elif name.endswith("proj.weight"):
            assert prefix in dense and np.array_equal(np.array(weights[name]), tensor.numpy())
    assert quantized == 2 + 3 * 6 - 1  # embed + lm_head + q,k,v,o,gate,up per layer, minus layer 1 o_proj
    model.load_state_dict(source)  # the torch model with exactly the dequantized weights
    x = tokens()
    assert np.abs(mlx_logits(runtime_model(out), x) - torch_logits(model, x)).max() <= 1e-4


def test_shards_index_and_reading_without_torch(tmp_path):
    """Convert in a subprocess where importing torch fails; small shards force an index with several files."""
    model, _ = make_checkpoint(tmp_path, "qwen3", True)
    src = save_model(model, tmp_path / "sharded-source", max_shard_size="100KB")
    assert len(list(src.glob("*.safetensors"))) > 1 and (src / "model.safetensors.index.json").is_file()
    out = tmp_path / "mlx"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from convert import convert_to_mlx\n"
            f"convert_to_mlx({str(src)!r}, {str(out)!r}, dtype='float32', max_shard_bytes=100_000)\n"
            "assert sys.modules['torch'] is None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert sorted(p.name for p in out.glob("*.safetensors")) == files
    from mlx_lm.utils import load_model  # stock loader still reads every shard
    from runtime_mlx.models import get_model_classes

    converted, _ = load_model(out, get_model_classes=get_model_classes, model_config={"model_file": None})
    assert np.abs(mlx_logits(converted, tokens()) - torch_logits(model, tokens())).max() <= 1e-4


def test_default_output_and_side_files(tmp_path):
    _, src = make_checkpoint(tmp_path, "llama", False)
    (src / "chat_template.jinja").write_text("{{ messages }}")
    (src / "tokenizer_config.json").write_text("{}")
    out = convert_to_mlx(src, quantize=4)
    assert out == Path(os.environ["SENTINEL_HOME"]) / "mlx" / "llama-plain-float16-q4"
    assert out == default_output(src, "float16", 4)
    assert (out / "chat_template.jinja").read_text() == "{{ messages }}"
    assert (out / "generation_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not list(out.parent.glob(".*tmp*"))


def test_cli_convert_with_verify(tmp_path):
    _, src = make_checkpoint(tmp_path, "qwen2", True)
    result = CliRunner().invoke(main, ["convert", str(src), "--to", "mlx", "--out", str(tmp_path / "o"),
                                       "--dtype", "float32", "--verify"])
    assert result.exit_code == 0, result.output
    assert "verify:" in result.output and ": ok" in result.output


def test_verify_catches_a_wrong_conversion(tmp_path):
    """Swapping two query heads in the MLX folder keeps every shape but must fail --verify."""
    _, src = make_checkpoint(tmp_path, "llama", True)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    assert verify_conversion(src, out)["ok"]
    weights = mx.load(str(out / "model.safetensors"))
    q = np.array(weights["model.layers.0.self_attn.q_proj.weight"])
    weights["model.layers.0.self_attn.q_proj.weight"] = mx.array(np.concatenate([q[16:32], q[:16], q[32:]]))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    report = verify_conversion(src, out)
    assert not report["ok"] and report["max_abs_diff"] > 1e-3


@pytest.mark.parametrize("forged", [False, True], ids=["plain", "forged"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_gpt2_conv1d_transposed_and_renamed(forged, tie, tmp_path):
    model = tiny_model("gpt2", tie_word_embeddings=tie)
    if forged:  # multi-head attention: query and KV heads leave together
        defrag(model, model_layout(model).replace_layer(1, LayerHeads((0, 2), (0, 2))))
        src = save_model(model, tmp_path / "gpt2")
    else:
        src = tmp_path / "gpt2"
        model.save_pretrained(src)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    weights = mx.load(str(out / "model.safetensors"))
    width = 2 * 16 if forged else 4 * 16
    assert weights["model.h.1.attn.c_attn.weight"].shape == (3 * width, 64)  # Linear [out, in]
    assert weights["model.h.1.attn.c_proj.weight"].shape == (64, width)
    assert ("lm_head.weight" in weights) == (not tie) and not any(".attn.bias" in k for k in weights)
    x = tokens()
    want = torch_logits(model, x)
    assert np.abs(mlx_logits(runtime_model(out), x) - want).max() <= 1e-4
    if forged:
        assert verify_conversion(src, out)["ok"]
    if tie:  # quantized (the runtime's gpt2 sanitize mis-prefixes an untied lm_head's scales; see report)
        q8 = convert_to_mlx(src, tmp_path / "q8", dtype="float32", quantize=8, group_size=32)
        assert "model.wpe.scales" in mx.load(str(q8 / "model.safetensors"))
        assert np.abs(mlx_logits(runtime_model(q8), x) - want).max() <= 2e-2


def qwen35_checkpoint(tmp_path: Path, forged: bool):
    """Tiny hybrid qwen3_5: layers 0-2 gated DeltaNet, layer 3 gated full attention (2 of 8 heads when forged)."""
    model = tiny_model("qwen3_5_text")
    if forged:
        defrag(model, model_layout(model).replace_layer(3, LayerHeads((2, 3), (1,))))
        return model, save_model(model, tmp_path / "q35")
    model.save_pretrained(tmp_path / "q35")
    return model, tmp_path / "q35"


def test_qwen3_5_plain_matches_torch_through_stock_mlx_lm(tmp_path):
    from mlx_lm.utils import load_model

    model, src = qwen35_checkpoint(tmp_path, forged=False)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="bfloat16")
    weights = mx.load(str(out / "model.safetensors"))
    assert weights["language_model.model.layers.0.linear_attn.A_log"].dtype == mx.float32  # stock keeps it
    assert weights["language_model.model.layers.0.linear_attn.conv1d.weight"].shape == (128, 4, 1)
    out32 = convert_to_mlx(src, tmp_path / "mlx32", dtype="float32")
    # stock mlx-lm has the classes under model_type qwen3_5 (the text-only name has no module there)
    stock, _ = load_model(out32, model_config={"model_type": "qwen3_5"})
    x = tokens()
    assert np.abs(mlx_logits(stock, x) - torch_logits(model, x)).max() <= 1e-4


def test_qwen3_5_forged_gated_q_blocks_and_dense_fallback(tmp_path):
    model, src = qwen35_checkpoint(tmp_path, forged=True)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32", quantize=4, group_size=64)
    weights = mx.load(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    assert config["sentinel_layout"] == json.loads((src / "config.json").read_text())["sentinel_layout"]
    attn = "language_model.model.layers.3.self_attn"
    assert weights[f"{attn}.q_proj.scales"].shape == (2 * 2 * 16, 1)  # 2 heads x (query + gate) rows
    assert weights[f"{attn}.o_proj.weight"].shape == (64, 2 * 16)  # 32 inputs: kept dense
    dense = {k for k, v in config["quantization"].items() if v is False}
    assert dense == {f"{attn}.o_proj"} | {f"language_model.model.layers.{i}.mlp.down_proj" for i in range(4)}
    out32 = convert_to_mlx(src, tmp_path / "mlx32", dtype="float32")
    x = tokens()
    assert np.abs(mlx_logits(runtime_model(out32), x) - torch_logits(model, x)).max() <= 1e-4


@pytest.mark.parametrize("quantize", [None, 4])
def test_same_tensors_as_stock_mlx_lm_convert(quantize, tmp_path):
    """Stock mlx_lm.convert on the same plain checkpoint writes the same tensors, index and quantization."""
    from mlx_lm.convert import convert

    from tiny_tokenizer import tiny_tokenizer

    _, src = make_checkpoint(tmp_path, "llama", False)
    tiny_tokenizer().save_pretrained(src)  # stock convert insists on a tokenizer
    stock = tmp_path / "stock"
    convert(str(src), str(stock), dtype="float16", quantize=quantize is not None, q_bits=quantize, q_group_size=64)
    ours = convert_to_mlx(src, tmp_path / "ours", dtype="float16", quantize=quantize, group_size=64)
    a, b = mx.load(str(ours / "model.safetensors")), mx.load(str(stock / "model.safetensors"))
    assert sorted(a) == sorted(b)
    assert all(a[k].dtype == b[k].dtype and mx.array_equal(a[k], b[k]).item() for k in a)
    index = [json.loads((p / "model.safetensors.index.json").read_text()) for p in (ours, stock)]
    assert index[0] == index[1]
    config = [json.loads((p / "config.json").read_text()) for p in (ours, stock)]
    if quantize:  # ours also names the matrices kept dense (down_proj: 96 inputs); stock leaves that implicit
        explicit = {k: v for k, v in config[0]["quantization"].items() if v is not False}
        assert explicit == config[1]["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
        assert sorted(k for k, v in config[0]["quantization"].items() if v is False) == [
            f"model.layers.{i}.mlp.down_proj" for i in range(3)]
    differ = {k for k in config[0].keys() | config[1].keys() if config[0].get(k) != config[1].get(k)}
    # ours also states the dtype the folder holds (stock keeps the source's float32)
    assert config[0]["dtype"] == "float16" and config[1]["dtype"] == "float32"
    assert differ == ({"rope_theta", "dtype", "quantization", "quantization_config"} if quantize
                      else {"rope_theta", "dtype"})


def test_qwen3_5_multimodal_wrapper_names(tmp_path):
    """A Qwen3_5ForConditionalGeneration folder: model.language_model.* kept, vision tower and MTP dropped."""
    from mlx_lm.utils import load_model

    model, src = qwen35_checkpoint(tmp_path, forged=False)
    weights = {k.replace("model.", "model.language_model.", 1): v
               for k, v in mx.load(str(src / "model.safetensors")).items()}
    weights.update({"model.visual.patch_embed.weight": mx.zeros((4, 4)), "mtp.fc.weight": mx.zeros((4, 4))})
    mx.save_safetensors(str(src / "model.safetensors"), weights)
    text = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({"model_type": "qwen3_5", "text_config": text,
                                                 "vision_config": {"depth": 1}, "tie_word_embeddings": False}))
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    names = mx.load(str(out / "model.safetensors"))
    assert not any("visual" in k or "mtp" in k for k in names)
    assert "vision_config" not in json.loads((out / "config.json").read_text())
    stock, _ = load_model(out)
    x = tokens()
    assert np.abs(mlx_logits(stock, x) - torch_logits(model, x)).max() <= 1e-4


def test_quantized_gpt2_with_untied_head_loads_in_the_runtime(tmp_path):
    """The untied lm_head's quantization scales/biases must survive the runtime's sanitize."""
    import mlx.core as mx

    from runtime_mlx import load_model as runtime_load

    model = tiny_model("gpt2")
    assert not model.config.tie_word_embeddings
    model.save_pretrained(tmp_path / "src")
    out = convert_to_mlx(tmp_path / "src", tmp_path / "q8", quantize=8, group_size=32)
    logits = np.array(runtime_load(out)(mx.array(tokens().numpy())).astype(mx.float32))
    reference = torch_logits(model, tokens())
    assert np.isfinite(logits).all() and (logits.argmax(-1) == reference.argmax(-1)).mean() > 0.9


def test_qwen3_5_forged_generates_with_mlx_lm_hybrid_caches(tmp_path):
    """KV caches (full attention, pruned) and DeltaNet state caches: cached decode == full recompute."""
    from mlx_lm.generate import generate_step

    _, src = qwen35_checkpoint(tmp_path, forged=True)
    model = runtime_model(convert_to_mlx(src, tmp_path / "mlx", dtype="float32"))
    prompt = [1, 2, 3, 4]
    cached = [int(t) for (t, _), _ in zip(generate_step(mx.array(prompt), model, max_tokens=8), range(8))]
    seq = list(prompt)
    for _ in range(8):
        seq.append(int(model(mx.array([seq]))[0, -1].argmax()))
    assert cached == seq[len(prompt):]
