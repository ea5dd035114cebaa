"""runtime_mlx on tiny forged models: our MLX classes give the torch model's logits, errors are one line."""

import json

import numpy as np
import pytest
import torch

from forge_cuda.checkpoint import save_model
from sentinel.cli.resolve import resolve_mlx
from sentinel.errors import LayoutError, SentinelError
from sentinel.layout import LayerHeads
from tiny import forge_tiny, tiny_model, tokens

FAMILIES = ["llama", "qwen2", "qwen3"]
# Layer 0 drops query heads inside groups, layer 1 keeps 3 of 4 KV heads: KV counts differ per layer.
def forged_folder(family, out, pruned=True, **overrides):
    """A tiny torch model, defragged to PRUNED and saved as an HF folder (fp32: names equal MLX names)."""
    model = tiny_model(family, **overrides)
    if pruned:
        forge_tiny(model)
    save_model(model, out)
    return model


GPT2_PRUNED = {0: LayerHeads((0, 2), (0, 2)), 1: LayerHeads((1, 2, 3), (1, 2, 3))}


@pytest.mark.parametrize("pruned", [True, False], ids=["forged", "plain"])
def test_gpt2_logits_match_torch(pruned, tmp_path):
    """gpt2: fused c_attn of the kept heads, untied lm_head and n_inner (stock mlx-lm assumes neither)."""
    import runtime_mlx

    torch_model = tiny_model("gpt2")
    if pruned:
        forge_tiny(torch_model, GPT2_PRUNED)
    save_model(torch_model, tmp_path / "m")  # raw HF names: Conv1D weights, transformer. prefix
    model = runtime_mlx.load_model(tmp_path / "m")
    x = tokens()
    with torch.no_grad():
        want = torch_model(x).logits.numpy()
    assert np.abs(mlx_logits(model, x) - want).max() <= 1e-4
    assert [layer.attn.n_heads for layer in model.layers] == ([2, 3, 4] if pruned else [4, 4, 4])


def mlx_logits(model, x):
    import mlx.core as mx

    return np.array(model(mx.array(x.numpy())).astype(mx.float32))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pruned", [True, False], ids=["forged", "plain"])
def test_logits_match_torch(family, pruned, tmp_path):
    import runtime_mlx

    torch_model = forged_folder(family, tmp_path / "m", pruned=pruned)
    model = runtime_mlx.load_model(tmp_path / "m")
    x = tokens()
    with torch.no_grad():
        want = torch_model(x).logits.numpy()
    assert np.abs(mlx_logits(model, x) - want).max() <= 1e-4
    heads = [layer.self_attn.n_kv_heads for layer in model.layers]
    assert heads == ([4, 3, 4] if pruned else [4, 4, 4])


def test_tied_embeddings_and_rope_parameters(tmp_path):
    """transformers 5 nests rope_theta in rope_parameters; stock mlx-lm llama ignores it, we must not."""
    import runtime_mlx

    torch_model = forged_folder("llama", tmp_path / "m", tie_word_embeddings=True,
                                rope_parameters={"rope_theta": 500.0, "rope_type": "default"})
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "rope_theta" not in cfg and cfg["rope_parameters"]["rope_theta"] == 500.0
    model = runtime_mlx.load_model(tmp_path / "m")
    assert "lm_head" not in model
    x = tokens(length=40)
    with torch.no_grad():
        want = torch_model(x).logits.numpy()
    assert np.abs(mlx_logits(model, x) - want).max() <= 1e-4


def test_missing_folder_and_unconverted_name(tmp_path):
    import runtime_mlx

    with pytest.raises(SentinelError, match="not found"):
        runtime_mlx.load_model(tmp_path / "nope")
    with pytest.raises(SentinelError, match=r"not converted to MLX yet: run `sentinel convert smollm2-135m --to mlx`"):
        runtime_mlx.load_model(resolve_mlx("smollm2-135m"))  # names are resolved by the CLI layer
    with pytest.raises(SentinelError, match="model folder smollm2-135m not found"):
        runtime_mlx.load_model("smollm2-135m")  # the runtime itself takes folders only
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(SentinelError, match="not a converted MLX folder"):
        runtime_mlx.load_model(tmp_path / "hf")


def test_unsupported_family(tmp_path):
    import runtime_mlx

    forged_folder("llama", tmp_path / "m", pruned=False)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model_type"] = "falcon"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SentinelError, match=r"unsupported model family 'falcon'.*llama"):
        runtime_mlx.load_model(tmp_path / "m")


def test_invalid_layout_is_refused(tmp_path):
    import runtime_mlx

    forged_folder("llama", tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["sentinel_layout"]["layers"][1]["kv_heads"] = [0, 2]  # query heads 6, 7 now lack their KV head
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LayoutError, match="layer 1: query head 6 belongs to KV head 3"):
        runtime_mlx.load_model(tmp_path / "m")


def test_weights_disagreeing_with_layout(tmp_path):
    import runtime_mlx

    forged_folder("llama", tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["sentinel_layout"]  # config now claims full heads, weights are pruned
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SentinelError, match="weights do not fit the model in config.json"):
        runtime_mlx.load_model(tmp_path / "m", lazy=False)


def test_runtime_imports_without_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import runtime_mlx, runtime_mlx.models.llama, runtime_mlx.models.qwen2, runtime_mlx.models.qwen3\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    """A byte-level BPE with a ChatML template, trained in a blink on a few words."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["hello world, tiny models chat about python code and lists"] * 4, vocab_size=300,
                            min_frequency=1, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def chat_folder(out, family="llama"):
    """A forged tiny model (irregular heads, per-layer KV counts) with a real tokenizer and chat template."""
    tok = tiny_tokenizer()
    model = forge_tiny(tiny_model(family, vocab_size=len(tok)))
    save_model(model, out, tokenizer=tok)
    return out
