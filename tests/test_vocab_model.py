"""Row surgery: a vocabulary-only prune keeps the original logits at the kept ids, every family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forge_cuda.vocab import parse_vocab_policy, plan_vocab, restrict_vocab, row_params, trim_hf_tokenizer
from forge_cuda.vocab.usage import count_ids
from sentinel.layout import LayerHeads, read_layout
from tiny_vocab import FAMILIES, VOCAB, chat_tokenizer, corpus, vocab_model


def domain_plan(model, policy="domain"):
    hf = chat_tokenizer()
    counts = count_ids([hf(corpus()[2], add_special_tokens=False)["input_ids"]], VOCAB)
    return plan_vocab(model, hf, counts, parse_vocab_policy(policy))


def kept_inputs(kept: np.ndarray, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random text in original ids and in trimmed ids."""
    g = np.random.default_rng(seed)
    new = torch.as_tensor(g.integers(0, len(kept), size=(2, 16)))
    return torch.as_tensor(kept)[new], new


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("family", FAMILIES)
def test_vocab_only_prune_keeps_logits_at_kept_ids(family, tie):
    model = vocab_model(family, tie=tie)
    old_params = sum(p.numel() for p in model.parameters())
    plan = domain_plan(model)
    old_ids, new_ids = kept_inputs(plan.kept)
    want = logits(model, old_ids)[..., torch.as_tensor(plan.kept)]
    origin = restrict_vocab(model, plan.kept)
    got = logits(model, new_ids)
    assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-6
    assert np.array_equal(origin, plan.kept) and model.config.vocab_size == len(plan.kept)
    hidden = model.get_input_embeddings().weight.shape[1]
    assert plan.row_params == hidden * (1 if tie else 2)
    assert sum(p.numel() for p in model.parameters()) == old_params - plan.removed_params
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tie
    layout = read_layout(model.config.to_dict())
    assert layout.vocab_ids == tuple(plan.kept.tolist()) and layout.base_vocab_size == VOCAB


def test_special_ids_are_renumbered_in_config_and_generation_config():
    model = vocab_model("llama")
    plan = domain_plan(model)
    restrict_vocab(model, plan.kept)
    position = {int(o): n for n, o in enumerate(plan.kept)}
    tok = chat_tokenizer()
    for cfg in (model.config, model.generation_config):
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == \
               (position[tok.bos_token_id], position[tok.eos_token_id], position[tok.pad_token_id])
    assert model.get_input_embeddings().padding_idx == position[tok.pad_token_id]


def test_coverage_removes_more_and_keep_removes_nothing():
    model = vocab_model("qwen2")
    domain, some, keep = (domain_plan(model, p) for p in ("domain", "0.95", "keep"))
    assert keep.removed_params == 0 and len(keep.kept) == VOCAB
    assert 0 < domain.removed_params < some.removed_params
    assert domain.to_dict()["kept"] == len(domain.kept) and domain.closure_added >= 0


def test_second_trim_composes_original_ids():
    model = vocab_model("llama")
    first = domain_plan(model).kept
    restrict_vocab(model, first)
    second = np.union1d(np.arange(0, len(first), 2), [1, 2])  # the specials (ids 0-2) stay
    hf = trim_hf_tokenizer(chat_tokenizer(), first)
    assert len(hf) == len(first)
    origin = restrict_vocab(model, second)
    assert np.array_equal(origin, first[second])
    assert read_layout(model.config.to_dict()).vocab_ids == tuple(first[second].tolist())


def test_composes_with_head_and_channel_pruning_either_order():
    from forge_cuda.pruning.defrag import defrag, model_layout

    layers = {0: LayerHeads((0, 2, 4, 6), (0, 1, 2, 3), mlp_channels=tuple(range(0, 96, 2))),
              1: LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3))}

    def shrink(model):
        layout = model_layout(model)
        for i, layer in layers.items():
            layout = layout.replace_layer(i, layer)
        defrag(model, layout)

    a, b = vocab_model("llama"), vocab_model("llama")
    kept = domain_plan(a).kept
    shrink(a)
    restrict_vocab(a, kept)
    restrict_vocab(b, kept)
    shrink(b)
    _, new_ids = kept_inputs(kept)
    assert torch.equal(logits(a, new_ids), logits(b, new_ids))
    la, lb = model_layout(a), model_layout(b)
    assert la == lb and la.vocab_ids == tuple(kept.tolist()) and la.layers[0].mlp_channels == layers[0].mlp_channels


@pytest.mark.parametrize("family", ["llama", "qwen3_5_text", "gpt2"])
def test_trimmed_folder_saves_and_loads_as_format_3(family, tmp_path):
    from forge_cuda.checkpoint import load_model, save_model

    model = vocab_model(family, tie=family == "gpt2")
    plan = domain_plan(model)
    old_ids, new_ids = kept_inputs(plan.kept)
    want = logits(model, old_ids)[..., torch.as_tensor(plan.kept)]
    restrict_vocab(model, plan.kept)
    folder = save_model(model, tmp_path / "trimmed", tokenizer=trim_hf_tokenizer(chat_tokenizer(), plan.kept))
    config = json.loads((folder / "config.json").read_text())
    block = config["sentinel_layout"]
    assert config["vocab_size"] == len(plan.kept) and block["format_version"] == 3
    assert block["base_vocab_size"] == VOCAB and config["model_type"] == model.config.model_type
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"] == int(np.searchsorted(plan.kept, 2))
    back = load_model(folder)
    assert (logits(back, new_ids) - want).abs().max().item() <= 1e-6
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert len(tok["model"]["vocab"]) == len(plan.kept)


def test_row_params_counts_an_untied_head_bias():
    model = vocab_model("llama")
    head = model.get_output_embeddings()
    head.bias = torch.nn.Parameter(torch.randn(VOCAB))
    assert row_params(model) == 2 * 64 + 1
    plan = domain_plan(model)
    old_ids, new_ids = kept_inputs(plan.kept)
    want = logits(model, old_ids)[..., torch.as_tensor(plan.kept)]
    restrict_vocab(model, plan.kept)
    assert head.bias.shape == (len(plan.kept),) and (logits(model, new_ids) - want).abs().max().item() <= 1e-6


def test_vocab_rows_are_one_free_move_of_the_pruning_search():
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.pruning.importance import score_units
    from forge_cuda.pruning.search import greedy_search
    from forge_cuda.pruning.space import channel_group_for, unit_costs
    from forge_cuda.vocab.part import VocabPart

    model = vocab_model("llama")
    plan = domain_plan(model, "0.95")
    layout = model_layout(model)
    x = torch.as_tensor(np.random.default_rng(0).integers(0, VOCAB, size=(4, 16)))
    scores = score_units(model, [x], "random", ("heads", "channels"))
    target = plan.removed_params + 3 * 64 * 64
    picked = greedy_search(layout, unit_costs(model), scores["heads"], scores["channels"], min_channels=10,
                           channel_group=channel_group_for(layout), extra=[VocabPart(plan)]).select(target)
    assert picked.moves["vocab_rows"] == 1 and picked.units["vocab_rows"] == plan.removed_rows
    assert picked.removed >= target and picked.moves["channels"] + picked.moves["query"] + picked.moves["group"] > 0


def test_trimmed_folder_with_the_base_tokenizer_is_refused(tmp_path):
    from forge_cuda.checkpoint import load_tokenizer, save_model
    from sentinel.errors import SentinelError

    model = vocab_model("llama")
    plan = domain_plan(model, "0.95")
    restrict_vocab(model, plan.kept)
    folder = save_model(model, tmp_path / "wrong", tokenizer=chat_tokenizer())
    with pytest.raises(SentinelError, match=f"tokenizer has {VOCAB} tokens but the vocabulary-trimmed model has "
                                            f"{len(plan.kept)} rows"):
        load_tokenizer(folder)
    good = save_model(model, tmp_path / "right", tokenizer=trim_hf_tokenizer(chat_tokenizer(), plan.kept))
    assert len(load_tokenizer(good)) == len(plan.kept)
