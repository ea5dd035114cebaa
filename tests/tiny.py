"""Tiny random models of each supported family (fp32, CPU, well under a million parameters)."""

from __future__ import annotations

import torch

from sentinel.layout import LayerHeads

TINY_COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=16,
                   max_position_embeddings=128, tie_word_embeddings=False)


def tiny_config(model_type: str, **overrides):
    from transformers import AutoConfig

    kwargs = dict(TINY_COMMON)
    if model_type == "qwen2":
        kwargs["use_sliding_window"] = False
    if model_type == "gpt2":  # multi-head attention, head_dim = n_embd / n_head, fused c_attn
        kwargs = dict(vocab_size=96, n_embd=64, n_head=4, n_layer=3, n_positions=128, n_inner=96,
                      bos_token_id=0, eos_token_id=0, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                      tie_word_embeddings=False)
    if model_type == "qwen3_5_text":  # hybrid: layers 0-2 gated DeltaNet, layer 3 gated full attention
        kwargs.update(num_hidden_layers=4, linear_num_key_heads=2, linear_num_value_heads=4,
                      linear_key_head_dim=16, linear_value_head_dim=16)
    kwargs.update(overrides)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_model(model_type: str, seed: int = 0, **overrides):
    """A random model whose biases (where the family has them) are non-zero, so slicing them matters."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, **overrides), dtype=torch.float32,
                                             attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def tokens(batch: int = 2, length: int = 12, vocab: int = 96, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


# Layer 0 drops query heads inside groups, layer 1 drops KV head 1 with its whole group (KV counts
# then differ per layer), layer 2 stays whole. Fits the llama-like tiny configs (8 query, 4 KV heads).
PRUNED = {0: LayerHeads((0, 2, 4, 6), (0, 1, 2, 3)), 1: LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))}


def pruned_layout(model, layers=None):
    """The model's current layout with ``layers`` (default PRUNED) replaced."""
    from forge_cuda.pruning.defrag import model_layout

    layout = model_layout(model)
    for i, layer in (PRUNED if layers is None else layers).items():
        layout = layout.replace_layer(i, layer)
    return layout


def forge_tiny(model, layers=None):
    """Defrag ``model`` in place to ``pruned_layout(model, layers)``; returns it."""
    from forge_cuda.pruning.defrag import defrag

    defrag(model, pruned_layout(model, layers))
    return model
