"""The model shapes the GPU check measures: real configs with random weights (speed needs no real weights).

The numbers are the published config.json values: SmolLM2-135M from the pulled
embedded model (``~/.cache/sentinel/models/smollm2-135m/config.json``),
Qwen2.5-Coder-0.5B from DESIGN.md §7 (qwen2, 24 layers, hidden 896, 14/2 heads, MLP 4864,
vocab 151,936, tied), Qwen3.5-4B's text model from its published config (32 layers:
3 gated-DeltaNet + 1 gated full-attention, hidden 2560, MLP 9216, 16/4 heads of 256,
vocab 248,320). The 4B shape keeps its width and vocabulary but only ``layers`` of its
depth, so it fits the time; its full-depth numbers are scaled by parameter count and
marked as estimates. ``--dry-run`` shrinks every shape to a tiny one of the same family.
"""

from __future__ import annotations

import copy

SMOLLM2_135M = dict(
    model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, hidden_act="silu", max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    tie_word_embeddings=True, attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=2)

QWEN25_CODER_05B = dict(
    model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, head_dim=64, hidden_act="silu", max_position_embeddings=32768,
    rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    tie_word_embeddings=True, use_sliding_window=False, bos_token_id=151643, eos_token_id=151645)

QWEN35_4B_TEXT = dict(
    model_type="qwen3_5_text", vocab_size=248320, hidden_size=2560, intermediate_size=9216, num_hidden_layers=32,
    layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 8, full_attention_interval=4,
    num_attention_heads=16, num_key_value_heads=4, head_dim=256, attn_output_gate=True,
    linear_num_key_heads=16, linear_num_value_heads=32, linear_key_head_dim=128, linear_value_head_dim=128,
    linear_conv_kernel_dim=4, max_position_embeddings=262144, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
                     "mrope_section": [11, 11, 10], "mrope_interleaved": True},
    tie_word_embeddings=True, eos_token_id=248044)

# name -> (config, layers measured on a GPU: None = all of them)
SHAPES = {
    "smollm2-135m": (SMOLLM2_135M, None),
    "qwen2.5-coder-0.5b": (QWEN25_CODER_05B, None),
    "qwen3.5-4b": (QWEN35_4B_TEXT, 8),
}

# Tiny stand-ins for --dry-run: same family and structure (GQA ratio, ties, hybrid pattern), CPU-sized.
DRY = {
    "llama": dict(vocab_size=320, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=3, num_key_value_heads=1, head_dim=16, max_position_embeddings=256),
    "qwen2": dict(vocab_size=320, hidden_size=56, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=7, num_key_value_heads=1, head_dim=8, max_position_embeddings=256),
    "qwen3_5_text": dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         layer_types=["linear_attention"] * 3 + ["full_attention"], num_attention_heads=4,
                         num_key_value_heads=1, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                         linear_key_head_dim=16, linear_value_head_dim=16, max_position_embeddings=256),
}


def shape_config(name: str, dry_run: bool) -> tuple[dict, dict]:
    """(config kwargs to build, facts about the shape) for one named shape."""
    real, layers = SHAPES[name]
    cfg = copy.deepcopy(real)
    facts = {"source": "published config.json numbers", "full_layers": real["num_hidden_layers"],
             "measured_layers": real["num_hidden_layers"], "scaled": False}
    if dry_run:
        cfg.update(DRY[cfg["model_type"]])
        cfg["tie_word_embeddings"] = real["tie_word_embeddings"]
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            cfg.pop(key, None)
        facts.update(source="dry run: tiny config of the same family", full_layers=cfg["num_hidden_layers"],
                     measured_layers=cfg["num_hidden_layers"])
    elif layers is not None:
        cfg["num_hidden_layers"] = layers
        if "layer_types" in cfg:
            cfg["layer_types"] = cfg["layer_types"][:layers]
        facts.update(measured_layers=layers, scaled=True)
    return cfg, facts


def build_model(cfg: dict, device, seed: int = 0):
    """A random fp32 model of ``cfg`` created directly on ``device`` (fp32 master weights, like the forge)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(cfg)
    config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def meta_params(name: str) -> int:
    """Parameters of the full published shape, counted on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(SHAPES[name][0])
    config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def full_params(name: str, measured_params: int, dry_run: bool) -> tuple[int, str]:
    """Parameters of the full-depth model: exact when measured at full depth, else from the full config."""
    if dry_run or SHAPES[name][1] is None:
        return measured_params, "measured"
    return meta_params(name), "counted on the meta device from the full config"
