"""A byte-level BPE tokenizer with chat specials and a chat template, and tiny models sized to it."""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path

VOCAB = 700
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "qwen3_5_text", "gpt2"]


def corpus() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / name).read_text() for name in ("os.py", "textwrap.py", "string.py", "shlex.py")]


@functools.lru_cache(maxsize=1)
def chat_tokenizer():
    """A fresh PreTrainedTokenizerFast (do not mutate: it is cached)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>", chat_template=TEMPLATE)


def vocab_model(model_type: str, tie: bool = False, seed: int = 0, **overrides):
    """A tiny random model whose rows match chat_tokenizer(), special ids set as a real config has them."""
    from tiny import tiny_model

    tok = chat_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = tiny_model(model_type, seed=seed, vocab_size=VOCAB, tie_word_embeddings=tie, **ids, **overrides)
    for key, value in ids.items():
        setattr(model.generation_config, key, value)
    return model
