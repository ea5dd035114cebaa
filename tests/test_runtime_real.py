"""Real SmolLM2-135M: our converter + runtime vs stock mlx_lm.convert + stock mlx-lm, fp32.

Stock mlx-lm 0.32.2's llama reads ``rope_theta`` only at the top of config.json,
but transformers 5 writes it inside ``rope_parameters`` (100000 for SmolLM2),
so stock silently falls back to 10000. The stock folder gets the top-level key
that older transformers wrote, which is what stock needs to be right.
"""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PROMPT = "Explain in detail how Python lists work, with several code examples."


@pytest.fixture(scope="module")
def folders(real_model, tmp_path_factory):
    from mlx_lm import convert as stock_convert

    from convert import convert_to_mlx

    root = tmp_path_factory.mktemp("real-runtime")
    ours = convert_to_mlx(real_model, root / "ours", dtype="float32")
    stock_convert(hf_path=str(real_model), mlx_path=str(root / "stock"), dtype="float32")
    cfg = json.loads((root / "stock" / "config.json").read_text())
    cfg.setdefault("rope_theta", cfg["rope_parameters"]["rope_theta"])
    (root / "stock" / "config.json").write_text(json.dumps(cfg))
    return ours, root / "stock"


def test_logits_and_greedy_text_match_stock(folders):
    import mlx.core as mx
    from mlx_lm import load, stream_generate

    import runtime_mlx

    ours, stock = folders
    model, tokenizer = runtime_mlx.load(ours)
    stock_model, stock_tokenizer = load(str(stock))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    assert prompt == stock_tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}],
                                                         add_generation_prompt=True)
    x = mx.array([prompt])
    diff = np.abs(np.array(model(x)) - np.array(stock_model(x))).max()
    assert diff <= 1e-4, diff

    # Ours generates 64 greedy tokens through mlx-lm; stock's greedy choice at every one of those
    # positions (one teacher-forced pass) must be the same token: identical greedy output.
    ours_tokens = [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=64)]
    # 64 tokens, or an answer that ended with EOS (then stock must pick EOS at the same place too).
    assert len(ours_tokens) == 64 or ours_tokens[-1] in tokenizer.eos_token_ids, tokenizer.decode(ours_tokens)
    seq = mx.array([prompt + ours_tokens])
    stock_next = np.array(mx.argmax(stock_model(seq)[0, len(prompt) - 1:-1], axis=-1)).tolist()
    assert stock_next == ours_tokens
