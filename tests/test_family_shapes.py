"""One description per family on the MLX side (runtime_mlx/shapes.py): the converter writes by it
and the planner counts by it, so a config alone predicts exactly the bytes a conversion writes.
Before it, the planner had its own tensor list with no qwen3_5 branch (hybrid DeltaNet layers
were counted as full attention) and llama's default tie flipped."""

import json

import mlx.core as mx
import pytest

from forge_cuda.checkpoint import save_model
from runtime_mlx import planner, shapes
from sentinel.layout import read_layout
from sentinel.layout import LayerHeads
from tiny import forge_tiny, tiny_model

GPT2_PRUNED = {0: LayerHeads((0, 2, 3), (0, 2, 3)), 2: LayerHeads((1,), (1,), mlp_channels=tuple(range(0, 96, 2)))}
QWEN35_PRUNED = {3: LayerHeads((0, 1, 4, 5), (0, 2), mlp_channels=tuple(range(0, 96, 3)))}  # layer 3: full attention


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "gpt2", "qwen3_5_text"])
@pytest.mark.parametrize("pruned", [False, True])
def test_config_alone_predicts_the_converted_bytes(tmp_path, model_type, pruned):
    from convert import convert_to_mlx

    model = tiny_model(model_type)
    if pruned:
        forge_tiny(model, {"gpt2": GPT2_PRUNED, "qwen3_5_text": QWEN35_PRUNED}.get(model_type))
    src = save_model(model, tmp_path / "hf")
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float32")
    written = {k: tuple(a.shape) for f in out.glob("*.safetensors") for k, a in mx.load(str(f)).items()}
    config = json.loads((out / "config.json").read_text())
    assert shapes.tensor_shapes(config, read_layout(config)) == written  # names, shapes and nothing else
    on_disk = sum(a.nbytes for f in out.glob("*.safetensors") for a in mx.load(str(f)).values())
    assert planner.model_facts(out / "config.json", "float32").weight_bytes == on_disk


def test_unknown_family_is_one_line():
    from sentinel.errors import SentinelError

    with pytest.raises(SentinelError, match="unsupported model family 'bert'"):
        shapes.tensor_shapes({"model_type": "bert"}, None)


def test_every_side_registers_the_same_families():
    """torch surgery, the converter's hooks and the MLX runtime (+ its shape descriptions) agree."""
    import convert.families
    import forge_cuda.families
    from runtime_mlx.models import FAMILIES

    from sentinel.remote_code import base_model_type

    mlx = sorted({base_model_type(t) for t in FAMILIES})  # the runtime may also accept sentinel_<family> names
    assert sorted(forge_cuda.families.supported_model_types()) == mlx
    assert sorted(convert.families.supported_model_types()) == mlx
    assert set(FAMILIES.values()) == set(shapes.SHAPES)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "gpt2", "qwen3_5_text"])
def test_torch_unit_costs_agree_with_the_mlx_description(model_type):
    """The search prices a KV group and a channel with torch's per-family costs; removing one from
    the layout must shrink the MLX description by exactly that many parameters."""
    import math

    from forge_cuda.families import family_for

    model = tiny_model(model_type)
    config = model.config.to_dict()
    family = family_for(model_type)
    layout = read_layout(config)
    count = lambda lay: sum(math.prod(s) for s in shapes.tensor_shapes(config, lay).values())  # noqa: E731
    i = family.attention_layers(model)[-1]
    base, layer = layout.base, layout.layers[i]
    group = base.num_heads // base.num_kv_heads
    per_q, per_kv = family.head_costs(model, i)
    without_group = LayerHeads(layer.q_heads[group:], layer.kv_heads[1:], mlp_channels=layer.mlp_channels)
    assert count(layout) - count(layout.replace_layer(i, without_group)) == group * per_q + per_kv
    width = base.intermediate_size or 4 * base.hidden_size
    one_less = LayerHeads(layer.q_heads, layer.kv_heads, mlp_channels=tuple(range(1, width)))
    assert count(layout) - count(layout.replace_layer(i, one_less)) == family.channel_cost(model, i)
