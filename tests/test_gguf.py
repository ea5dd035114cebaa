"""`sentinel convert --to gguf`, read back by a real llama.cpp (cyllama's CPU build): logits, greedy text, types."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sentinel.layout import LayerHeads
from tiny import forge_tiny, tiny_model
from tiny_tokenizer import tiny_tokenizer

pytest.importorskip("gguf")
pytest.importorskip("cyllama")

from convert.gguf_llama import LlamaCpp  # noqa: E402
from convert.to_gguf import convert_to_gguf, modelfile_path  # noqa: E402

VOCAB = 320  # the tiny tokenizer's size, so the GGUF carries a real vocabulary
TOKENS = [5, 17, 99, 3, 250, 41, 7, 8, 200, 100, 12, 13]
# Heads as tests/tiny.PRUNED, plus irregular MLP widths (48 and 80 of 96 channels; 80 is no multiple of 32).
HEADS_AND_MLP = {0: LayerHeads((0, 2, 4, 6), (0, 1, 2, 3), mlp_channels=tuple(range(0, 96, 2))),
                 1: LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3)),
                 2: LayerHeads(tuple(range(8)), tuple(range(4)), mlp_channels=tuple(range(8, 88)))}
CASES = {"plain": None, "heads": "heads", "heads+mlp": HEADS_AND_MLP}


def make_checkpoint(tmp_path, model_type: str, case: str, dtype=torch.float32, chat_template: str | None = None):
    """A tiny random model (hidden = heads x head_dim, as real checkpoints have) saved as an HF folder."""
    from forge_cuda.checkpoint import save_model

    model = tiny_model(model_type, vocab_size=VOCAB, hidden_size=128)
    if CASES[case] is not None:
        forge_tiny(model, None if CASES[case] == "heads" else CASES[case])
    folder = tmp_path / f"{model_type}-{case}"
    save_model(model.to(dtype), folder, tokenizer=tiny_tokenizer())
    if chat_template:
        (folder / "chat_template.jinja").write_text(chat_template)
    return model.float().eval(), folder


def torch_greedy(model, tokens: list[int], n: int) -> list[int]:
    ids = torch.tensor([tokens])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, min_new_tokens=n, pad_token_id=0)
    return out[0, len(tokens):].tolist()


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
@pytest.mark.parametrize("case", list(CASES))
def test_f32_logits_and_greedy_match_torch(tmp_path, model_type, case):
    model, folder = make_checkpoint(tmp_path, model_type, case)
    path = convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f32")
    with torch.no_grad():
        ref = model(torch.tensor([TOKENS])).logits[0].numpy()
    with LlamaCpp(path, exact=True) as llm:
        arch = llm.meta("general.architecture")
        got = llm.logits(TOKENS)
        greedy = llm.greedy(TOKENS, 16)
    assert arch == ({"llama": "llama", "qwen2": "qwen2"}[model_type] if case == "plain" else "deci")
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-3
    assert greedy == torch_greedy(model, TOKENS, 16)


def test_deci_header_carries_per_layer_counts(tmp_path):
    import gguf

    _, folder = make_checkpoint(tmp_path, "llama", "heads+mlp")
    reader = gguf.GGUFReader(convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f32"))

    def array(key):
        field = reader.fields[key]
        return [int(field.parts[i][0]) for i in field.data]

    assert array("deci.attention.head_count") == [4, 6, 8]
    assert array("deci.attention.head_count_kv") == [4, 3, 4]
    assert array("deci.feed_forward_length") == [48, 96, 80]
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert shapes["blk.0.ffn_down.weight"] == (48, 128)  # GGUF lists dims innermost first
    assert shapes["blk.1.attn_k.weight"] == (128, 48)


def test_qwen2_layer_with_fewer_kv_heads_is_zero_padded_exactly(tmp_path):
    """deci reads attn_q.bias as hidden_size wide (older llama.cpp releases insist): pad with zero heads."""
    import gguf

    model, folder = make_checkpoint(tmp_path, "qwen2", "heads")
    reader = gguf.GGUFReader(convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f32"))
    field = reader.fields["sentinel.zero_padded_layers"]
    assert [int(field.parts[i][0]) for i in field.data] == [0, 1]
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert shapes["blk.1.attn_q.bias"] == (128,) and shapes["blk.1.attn_k.bias"] == (64,)  # 3 KV heads -> 4


@pytest.mark.parametrize("outtype,limit", [("f16", 0.02), ("bf16", 0.1), ("q8_0", 0.1)])
def test_reduced_types_load_and_generate(tmp_path, outtype, limit):
    model, folder = make_checkpoint(tmp_path, "llama", "heads+mlp")
    path = convert_to_gguf(folder, tmp_path / f"m-{outtype}.gguf", outtype=outtype)
    f32 = convert_to_gguf(folder, tmp_path / "m-f32.gguf", outtype="f32")
    assert path.stat().st_size < 0.75 * f32.stat().st_size
    with torch.no_grad():
        ref = model(torch.tensor([TOKENS])).logits[0].numpy()
    with LlamaCpp(path, exact=True) as llm:
        got = llm.logits(TOKENS)
        assert len(llm.greedy(TOKENS, 16)) == 16
    assert np.abs(got - ref).max() <= limit
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.75


def test_bfloat16_checkpoint_reads_exactly(tmp_path):
    model, folder = make_checkpoint(tmp_path, "qwen2", "heads+mlp", dtype=torch.bfloat16)
    model = model.to(torch.bfloat16).float()  # the weights the file holds
    with torch.no_grad():
        ref = model(torch.tensor([TOKENS])).logits[0].numpy()
    with LlamaCpp(convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f32"), exact=True) as llm:
        assert np.abs(llm.logits(TOKENS) - ref).max() <= 1e-3


def test_tokenizer_chat_template_and_modelfile(tmp_path):
    template = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}{% endif %}"
                "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}")
    _, folder = make_checkpoint(tmp_path, "llama", "heads", chat_template=template)
    path = convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f16")
    text = "def join(a, b):\n    return os.path.join(a, b)  # 42 items\n"
    with LlamaCpp(path) as llm:
        assert llm.tokenize(text, add_special=True) == tiny_tokenizer()(text)["input_ids"]
        assert llm.meta("tokenizer.ggml.pre") == "gpt-2"
        assert llm.meta("tokenizer.chat_template") == template
        eos = llm.tokenize("<eos>", add_special=False, parse_special=True)
        assert eos == [tiny_tokenizer().eos_token_id] and llm.vocab.is_eog(eos[0])
    modelfile = modelfile_path(path).read_text()
    assert "FROM ./m.gguf" in modelfile
    assert 'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}' in modelfile
    assert 'SYSTEM """You are a tiny test model."""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and 'PARAMETER stop "<eos>"' in modelfile


def test_qwen2_pre_tokenizer_is_recognised():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from convert.gguf_vocab import QWEN2_SPLIT, pre_tokenizer_name

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    assert pre_tokenizer_name(json.loads(tok.to_str())) == "qwen2"
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert pre_tokenizer_name(json.loads(tok.to_str())) == "smollm"


def test_verify_measures_through_llama_cpp(tmp_path):
    from click.testing import CliRunner

    from sentinel.cli import main

    _, folder = make_checkpoint(tmp_path, "qwen2", "heads+mlp")
    path = convert_to_gguf(folder, tmp_path / "m.gguf", outtype="q8_0")
    result = CliRunner().invoke(main, ["verify", str(path), "--contexts", "16,48", "--decode-tokens", "8",
                                       "--repeats", "2", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v" / "m.verify.json").read_text())
    assert report["architecture"] == "deci" and report["bytes"] == path.stat().st_size
    assert [r["context"] for r in report["runs"]] == [16, 48]
    assert all(r["prompt_tps"] > 0 and r["decode_tps"] > 0 for r in report["runs"])
    assert report["load_s"] > 0 and report["peak_rss_bytes"] >= report["rss_before_load_bytes"] > 0
    if not report["device"]["apple_silicon"]:  # "verified" only on the named MacBook itself
        assert all(t["status"] == "not measured" for t in report["targets"])
    assert (tmp_path / "v" / "m.verify.md").read_text().startswith("# llama.cpp measurement: m.gguf")


def test_default_system_prompt_with_real_or_escaped_newlines():
    from convert.gguf_modelfile import default_system

    for newline in ("\\n", "\n"):
        template = "{{ '<|im_start|>system" + newline + "You are SmolLM.<|im_end|>" + newline + "' }}"
        assert default_system(template, "chatml") == "You are SmolLM."
    assert default_system("{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}", "chatml") is None
