"""A small byte-level BPE tokenizer trained in-process, so tiny test models keep a tiny vocabulary."""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path


@functools.lru_cache(maxsize=1)
def tiny_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    root = Path(sysconfig.get_paths()["stdlib"])
    texts = [(root / name).read_text() for name in ("os.py", "textwrap.py", "string.py")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def save_tiny_checkpoint(model, folder: Path) -> Path:
    """A tiny model + tokenizer as an HF folder (what `sentinel forge` takes as MODEL)."""
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
