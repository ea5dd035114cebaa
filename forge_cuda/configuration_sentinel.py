"""Config classes of Sentinel forged models: the stock family configs under ``sentinel_<family>`` names.

Stock transformers does not know ``sentinel_llama`` & co., so a forged folder (whose
layers have their own head counts and MLP widths) is never built as the stock class
with mismatched shapes: without ``trust_remote_code=True`` transformers stops and names
the flag. Kept apart from modeling_sentinel.py and free of torch, so tools that only
need the config (AutoTokenizer, mlx-lm loading a tokenizer) work without torch.
Self-contained (transformers only): forged folders carry a copy.
"""

from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

PREFIX = "sentinel_"  # model_type prefix of forged folders


class SentinelLlamaConfig(LlamaConfig):
    model_type = PREFIX + "llama"


class SentinelMistralConfig(MistralConfig):
    model_type = PREFIX + "mistral"


class SentinelQwen2Config(Qwen2Config):
    model_type = PREFIX + "qwen2"


class SentinelQwen3Config(Qwen3Config):
    model_type = PREFIX + "qwen3"


class SentinelGPT2Config(GPT2Config):
    model_type = PREFIX + "gpt2"


CONFIGS = {"llama": SentinelLlamaConfig, "mistral": SentinelMistralConfig, "qwen2": SentinelQwen2Config,
           "qwen3": SentinelQwen3Config, "gpt2": SentinelGPT2Config}

try:
    from transformers import Qwen3_5TextConfig

    class SentinelQwen3_5TextConfig(Qwen3_5TextConfig):
        model_type = PREFIX + "qwen3_5_text"

    CONFIGS["qwen3_5_text"] = SentinelQwen3_5TextConfig
except ImportError:  # transformers older than Qwen3.5
    pass
