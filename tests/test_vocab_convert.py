"""A vocabulary-trimmed checkpoint through the converters: MLX and GGUF greedy tokens equal torch's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from forge_cuda.checkpoint import save_model
from forge_cuda.vocab import parse_vocab_policy, plan_vocab, restrict_vocab, trim_hf_tokenizer
from forge_cuda.vocab.usage import count_ids
from sentinel.layout import LayerHeads
from tiny_vocab import VOCAB, chat_tokenizer, corpus, vocab_model

PROMPT = "def reverse(text):\n    return "
HEADS = {0: LayerHeads((0, 2, 4, 6), (0, 1, 2, 3), mlp_channels=tuple(range(0, 96, 2))),
         1: LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))}
GPT2_HEADS = {0: LayerHeads((0, 2), (0, 2), mlp_channels=tuple(range(0, 96, 2))), 1: LayerHeads((1, 3), (1, 3))}


def trimmed_checkpoint(tmp_path, family: str, heads: bool, tie: bool = False, **overrides):
    """(torch model, trimmed HF tokenizer, folder) of a tiny model trimmed to string.py's tokens."""
    from forge_cuda.pruning.defrag import defrag, model_layout

    model = vocab_model(family, tie=tie, **overrides)
    hf = chat_tokenizer()
    counts = count_ids([hf(corpus()[2], add_special_tokens=False)["input_ids"]], VOCAB)
    plan = plan_vocab(model, hf, counts, parse_vocab_policy("domain"))
    restrict_vocab(model, plan.kept)
    if heads:
        layout = model_layout(model)
        for i, layer in (GPT2_HEADS if family == "gpt2" else HEADS).items():
            layout = layout.replace_layer(i, layer)
        defrag(model, layout)
    tok = trim_hf_tokenizer(hf, plan.kept)
    folder = save_model(model, tmp_path / f"{family}-trimmed", tokenizer=tok)
    return model.eval(), tok, folder


def torch_greedy(model, ids: list[int], n: int = 12) -> list[int]:
    """Argmax continuation by full recompute (generate's min_new_tokens would mask EOS, a real candidate here)."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):]


@pytest.mark.parametrize("heads", [False, True], ids=["vocab", "vocab+heads"])
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gpt2"])
def test_mlx_greedy_equals_torch(tmp_path, family, heads):
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    from convert import convert_to_mlx
    from runtime_mlx import load_model
    from runtime_mlx.loader import load_tokenizer

    model, tok, folder = trimmed_checkpoint(tmp_path, family, heads, tie=family == "gpt2")
    out = convert_to_mlx(folder, tmp_path / "mlx", dtype="float32")
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    runtime_tok = load_tokenizer(out)  # (its class follows model_type: Qwen2Tokenizer may split differently)
    assert runtime_tok.decode(ids) == PROMPT and len(runtime_tok._tokenizer) == len(tok)
    mlx_model = load_model(out)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    got = np.array(mlx_model(mx.array([ids]))[0].astype(mx.float32))
    assert got.shape == (len(ids), len(tok)) and np.abs(got - want).max() <= 1e-4
    greedy = [int(t) for (t, _), _ in zip(generate_step(mx.array(ids), mlx_model, max_tokens=12), range(12))]
    assert greedy == torch_greedy(model, ids)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(tok)


@pytest.mark.parametrize("heads", [False, True], ids=["vocab", "vocab+heads"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_gguf_greedy_and_vocabulary_equal_torch(tmp_path, family, heads):
    pytest.importorskip("gguf")
    pytest.importorskip("cyllama")
    import gguf

    from convert.gguf_llama import LlamaCpp
    from convert.to_gguf import convert_to_gguf

    model, tok, folder = trimmed_checkpoint(tmp_path, family, heads, hidden_size=128)
    path = convert_to_gguf(folder, tmp_path / "m.gguf", outtype="f32")
    reader = gguf.GGUFReader(path)
    field = reader.fields["tokenizer.ggml.tokens"]
    names = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    assert names == tok.convert_ids_to_tokens(list(range(len(tok))))
    types = reader.fields["tokenizer.ggml.token_type"]
    control = [i for i, k in enumerate(int(types.parts[j][0]) for j in types.data) if k == 3]
    assert control == sorted(tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    merges = reader.fields["tokenizer.ggml.merges"]
    stored = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    assert [bytes(merges.parts[i]).decode("utf-8") for i in merges.data] == [" ".join(m) for m in stored]
    eos = reader.fields["tokenizer.ggml.eos_token_id"]
    assert int(eos.parts[eos.data[0]][0]) == tok.eos_token_id == model.config.eos_token_id
    embedded = Tokenizer.from_file(str(folder / "tokenizer.json"))  # what the GGUF carries
    ids = embedded.encode(PROMPT, add_special_tokens=False).ids
    with LlamaCpp(path, exact=True) as llm:
        assert llm.tokenize(PROMPT, add_special=False) == ids
        chat = "<|im_start|>user\nhi<|im_end|>\n"
        assert llm.tokenize(chat, add_special=False, parse_special=True) == \
               embedded.encode(chat, add_special_tokens=False).ids
        assert llm.detokenize(ids) == PROMPT
        greedy = llm.greedy(ids, 12)
    assert greedy == torch_greedy(model, ids)
