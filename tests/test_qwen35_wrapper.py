"""A Qwen3.5 checkpoint as published (multimodal wrapper) through load -> prune -> convert -> MLX.

The tiny model has the real config's structure: ``Qwen3_5ForConditionalGeneration`` with a
vision tower, ``text_config`` with the linear/full ``layer_types`` pattern (3 gated-DeltaNet
layers, then one gated full-attention layer), gated ``q_proj`` (query + gate rows per head),
partial multimodal rope, and MTP tensors in their own shard the way the published
safetensors carry them (transformers itself never loads them). It is saved with
``save_pretrained`` of the real class, sharded, with an index.
"""

import json

import mlx.core as mx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from convert import convert_to_mlx
from forge_cuda.checkpoint import load_model
from forge_cuda.pruning.command import run_prune
from forge_cuda.pruning.options import PruneOptions
from forge_cuda.wrappers import vision_policy
from runtime_mlx import load_model as load_mlx
from sentinel.cli import main
from sentinel.config import family_config
from sentinel.layout import read_layout
from sentinel.weights import weight_files
from tiny import tokens
from tiny_tokenizer import tiny_tokenizer

FULL = (3, 7)  # full-attention layers of the 8-layer pattern


def wrapper_config(vocab: int, tied: bool):
    from transformers.models.qwen3_5 import Qwen3_5Config

    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=8,
                layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2, full_attention_interval=4,
                num_attention_heads=8, num_key_value_heads=2, head_dim=16, attn_output_gate=True,
                linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16,
                linear_conv_kernel_dim=4, max_position_embeddings=256, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [1, 1, 0], "mrope_interleaved": True},
                mtp_num_hidden_layers=1, mtp_use_dedicated_embeddings=False, tie_word_embeddings=tied)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16, in_channels=3)
    return Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=tied)


def mtp_tensors(hidden: int = 64, heads: int = 8, kv: int = 2, hd: int = 16, inter: int = 128) -> dict:
    """The published checkpoint's multi-token-prediction block: one full-attention layer plus its fc and norms."""
    g = torch.Generator().manual_seed(3)
    shapes = {"mtp.fc.weight": (hidden, 2 * hidden), "mtp.norm.weight": (hidden,),
              "mtp.pre_fc_norm_embedding.weight": (hidden,), "mtp.pre_fc_norm_hidden.weight": (hidden,),
              "mtp.layers.0.input_layernorm.weight": (hidden,),
              "mtp.layers.0.post_attention_layernorm.weight": (hidden,),
              "mtp.layers.0.self_attn.q_proj.weight": (2 * heads * hd, hidden),
              "mtp.layers.0.self_attn.k_proj.weight": (kv * hd, hidden),
              "mtp.layers.0.self_attn.v_proj.weight": (kv * hd, hidden),
              "mtp.layers.0.self_attn.o_proj.weight": (hidden, heads * hd),
              "mtp.layers.0.self_attn.q_norm.weight": (hd,), "mtp.layers.0.self_attn.k_norm.weight": (hd,),
              "mtp.layers.0.mlp.gate_proj.weight": (inter, hidden), "mtp.layers.0.mlp.up_proj.weight": (inter, hidden),
              "mtp.layers.0.mlp.down_proj.weight": (hidden, inter)}
    return {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}


def save_published(folder, tied: bool = False):
    """Build, save (real class, sharded, with index) and return the tiny wrapper model."""
    from transformers.models.qwen3_5 import Qwen3_5ForConditionalGeneration

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = Qwen3_5ForConditionalGeneration(wrapper_config(len(tok), tied)).eval()
    with torch.no_grad():  # zero-initialised (1 + w) norms and biases would hide a wrong mapping
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder, max_shard_size="200KB")
    tok.save_pretrained(folder)
    save_file(mtp_tensors(), folder / "model-mtp.safetensors", metadata={"format": "pt"})
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"].update(dict.fromkeys(mtp_tensors(), "model-mtp.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "preprocessor_config.json").write_text(json.dumps({"patch_size": 4, "merge_size": 2}))
    return model


def stored_names(folder) -> set[str]:
    names = set()
    for file in weight_files(folder):
        with safe_open(file, framework="pt") as f:
            names.update(f.keys())
    return names


def torch_logits(model, ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=ids).logits.float().numpy()


def mlx_logits(folder, ids: torch.Tensor) -> np.ndarray:
    return np.array(load_mlx(folder)(mx.array(ids.numpy())).astype(mx.float32))


IDS = tokens(2, 12, vocab=300)


@pytest.mark.parametrize("tied", [False, True])
def test_loader_reads_the_text_model_inside_the_wrapper(tmp_path, tied):
    src = tmp_path / "published"
    wrapper = save_published(src, tied)
    names = stored_names(src)
    assert any(n.startswith("model.visual.") for n in names) and any(n.startswith("mtp.") for n in names)
    assert ("lm_head.weight" in names) is not tied
    ours = load_model(src)
    assert type(ours).__name__ == "Qwen3_5ForCausalLM" and ours.config.model_type == "qwen3_5_text"
    assert not any("visual" in n or "mtp" in n for n, _ in ours.named_parameters())
    np.testing.assert_allclose(torch_logits(ours, IDS), torch_logits(wrapper, IDS), atol=1e-5, rtol=0)


def test_prune_heads_and_mlp_drop_vision_convert_matches_torch(tmp_path):
    src = tmp_path / "published"
    save_published(src)
    out = tmp_path / "pruned"
    options = PruneOptions(criterion="activation", level=0.5, mlp_level=0.25, channel_group=8, refit=False,
                           batch_size=2)
    with vision_policy(keep=False):
        report = run_prune(str(src), src, out, options, domain="code", calib_windows=4, seq_len=32, progress=False)
    config = json.loads((out / "config.json").read_text())
    # pruned shapes: its own classes on disk (trust_remote_code), the text family for every reader
    assert config["model_type"] == "sentinel_qwen3_5_text" and config["architectures"] == ["SentinelQwen3_5ForCausalLM"]
    base = family_config(out)
    assert base["model_type"] == "qwen3_5_text" and base["architectures"] == ["Qwen3_5ForCausalLM"]
    assert not any(n.startswith(("model.visual.", "mtp.", "model.language_model.")) for n in stored_names(out))
    layout = read_layout(config)
    assert sum(layout.layers[i].num_heads for i in FULL) == 8  # half of the 16 full-attention query heads
    assert all(layout.layers[i].num_heads == 8 for i in range(8) if i not in FULL)  # DeltaNet layers untouched
    assert sum(layout.mlp_widths) < 8 * 128 and report["params"]["after"] < report["params"]["before"]

    pruned = load_model(out)
    want = torch_logits(pruned, IDS)
    mlx_folder = convert_to_mlx(out, tmp_path / "mlx", dtype="float32")
    assert np.abs(mlx_logits(mlx_folder, IDS) - want).max() <= 1e-4


def test_keep_vision_writes_the_wrapper_shape_back(tmp_path):
    src = tmp_path / "published"
    save_published(src)
    runner = CliRunner()
    # this fixture's tokenizer has ids past the model's rows, so the vocabulary stays whole (see test_vocab_*)
    common = ["--criterion", "magnitude", "--prune-level", "0.5", "--vocab", "keep"]
    kept, text_only = tmp_path / "kept", tmp_path / "text-only"
    for out, flag in ((kept, "--keep-vision"), (text_only, "--drop-vision")):
        result = runner.invoke(main, ["prune", str(src), "--out", str(out), *common, flag])
        assert result.exit_code == 0, result.output

    config = json.loads((kept / "config.json").read_text())
    assert config["model_type"] == "qwen3_5" and config["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    assert config["text_config"]["model_type"] == "qwen3_5_text" and "vision_config" in config
    assert "sentinel_layout" in config and "sentinel_layout" not in config["text_config"]
    assert (kept / "preprocessor_config.json").read_text() == (src / "preprocessor_config.json").read_text()
    names = stored_names(kept)
    assert not any(n.startswith("mtp.") for n in names)
    vision = {n for n in stored_names(src) if n.startswith("model.visual.")}
    assert vision and vision <= names
    assert all(n.startswith(("model.language_model.", "model.visual.", "lm_head.")) for n in names)
    with safe_open(next(f for f in weight_files(kept) if f.name == "vision.safetensors"), framework="pt") as f:
        got = {n: f.get_tensor(n) for n in f.keys()}
    reference = {}
    for file in weight_files(src):
        with safe_open(file, framework="pt") as f:
            reference.update({n: f.get_tensor(n) for n in f.keys() if n in vision})
    assert all(torch.equal(got[n], reference[n]) for n in vision)

    # The same pruned text model either way; the kept folder loads, prunes again and converts.
    want = torch_logits(load_model(text_only), IDS)
    np.testing.assert_array_equal(torch_logits(load_model(kept), IDS), want)
    assert read_layout(config) == read_layout(json.loads((text_only / "config.json").read_text()))
    mlx_folder = convert_to_mlx(kept, tmp_path / "kept-mlx", dtype="float32")
    assert np.abs(mlx_logits(mlx_folder, IDS) - want).max() <= 1e-4


def test_forge_keeps_the_vision_tower_of_a_wrapper(tmp_path):
    """`sentinel forge` on the published shape: stage 0, one prune/distill cycle, a wrapper folder out."""
    src = tmp_path / "published"
    save_published(src)
    out = tmp_path / "forged"
    result = CliRunner().invoke(main, [
        "forge", str(src), "--out", str(out), "--keep-vision", "--prune-level", "0.5", "--mlp-level", "0.25",
        "--channel-group", "8", "--criterion", "activation", "--cycles", "1", "--steps", "1", "--batch-size", "2",
        "--seq-len", "32", "--train-tokens", "1000", "--eval-tokens", "256", "--calib-windows", "4"])
    assert result.exit_code == 0, result.output
    model = out / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    layout = read_layout(config)
    assert sum(layout.layers[i].num_heads for i in FULL) == 8 and sum(layout.mlp_widths) < 8 * 128
    vision = {n for n in stored_names(src) if n.startswith("model.visual.")}
    assert vision <= stored_names(model)
    want = torch_logits(load_model(model), IDS)
    mlx_folder = convert_to_mlx(model, tmp_path / "forged-mlx", dtype="float32")
    assert np.abs(mlx_logits(mlx_folder, IDS) - want).max() <= 1e-4
