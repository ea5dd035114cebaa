"""Planner and card count the smaller embedding; folders written before FORMAT v3 still load."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from sentinel.layout import LAYOUT_KEY, LayerHeads
from test_vocab_convert import trimmed_checkpoint
from tiny_vocab import VOCAB, vocab_model


def test_planner_and_card_count_the_trimmed_embedding(tmp_path):
    from convert import convert_to_mlx
    from runtime_mlx import planner

    model, tok, folder = trimmed_checkpoint(tmp_path, "llama", heads=True)
    params = sum(p.numel() for p in model.parameters())
    assert params < sum(p.numel() for p in vocab_model("llama").parameters()) - 100 * 2 * 64
    out = convert_to_mlx(folder, tmp_path / "mlx", dtype="float32")
    config = json.loads((out / "config.json").read_text())
    facts = planner.model_facts(out)
    assert facts.vocab_size == len(tok) < VOCAB
    assert facts.weight_bytes == 4 * params
    assert sum(math.prod(s) for _, s in planner.config_tensors(config, "F32").values()) == params
    assert f"| parameters | {params:,} |" in (out / "README.md").read_text()


def _save_forged(tmp_path):
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout

    model = vocab_model("llama")
    layout = model_layout(model).replace_layer(0, LayerHeads((0, 2, 4, 6), (0, 1, 2, 3),
                                                              mlp_channels=tuple(range(0, 96, 3))))
    layout = layout.replace_layer(1, LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3)))
    defrag(model, layout)
    return model.eval(), save_model(model, tmp_path / "forged"), layout


def test_version_1_and_2_folders_still_load(tmp_path):
    from convert import convert_to_mlx
    from forge_cuda.checkpoint import load_model
    from runtime_mlx import load_model as load_mlx

    import mlx.core as mx

    model, folder, layout = _save_forged(tmp_path)
    x = torch.as_tensor(np.random.default_rng(0).integers(0, VOCAB, size=(1, 10)))
    with torch.no_grad():
        want = model(x).logits
    config = json.loads((folder / "config.json").read_text())
    block = config[LAYOUT_KEY]
    assert block["format_version"] == 3 and block["layers"][0]["mlp_channels"] == [[c, c + 1] for c in range(0, 96, 3)]
    block["format_version"] = 2  # as a v2 writer stored it: plain int lists
    block["layers"][0]["mlp_channels"] = list(range(0, 96, 3))
    (folder / "config.json").write_text(json.dumps(config))
    with torch.no_grad():
        assert (load_model(folder)(x).logits - want).abs().max().item() <= 1e-6
    mlx_model = load_mlx(convert_to_mlx(folder, tmp_path / "mlx2", dtype="float32"))
    assert np.abs(np.array(mlx_model(mx.array(x.numpy()))) - want.numpy()).max() <= 1e-4

    heads_only = vocab_model("llama")
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout

    defrag(heads_only, model_layout(heads_only).replace_layer(1, layout.layers[1]))
    v1 = save_model(heads_only, tmp_path / "v1")
    config = json.loads((v1 / "config.json").read_text())
    config[LAYOUT_KEY]["format_version"] = 1
    (v1 / "config.json").write_text(json.dumps(config))
    with torch.no_grad():
        assert (load_model(v1)(x).logits - heads_only.eval()(x).logits).abs().max().item() <= 1e-6
