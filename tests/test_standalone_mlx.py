"""A converted forged MLX folder runs in stock mlx-lm with only mlx + mlx-lm importable.

Acceptance for issue 20 item 2: the folder's ``sentinel_model.py`` is a copy of our own
model module (mlx + mlx-lm only); an interpreter without torch and without any project
code runs ``mlx_lm.load(..., trust_remote_code)`` + ``generate`` and gets our runtime's
logits and greedy tokens; without the flag mlx-lm refuses and names it.
"""

import inspect
import json

import pytest

pytest.importorskip("mlx_lm")

from standalone import IMPORT_PROBE, last_json, prompt_ids, run_isolated, forged_folder  # noqa: E402

STOCK = IMPORT_PROBE + """
import json
import mlx.core as mx
from mlx_lm import load, generate
from mlx_lm.sample_utils import make_sampler
folder, ids = sys.argv[1], json.loads(sys.argv[2])
try:
    load(folder)
    refused = None
except ValueError as e:
    refused = str(e)
model, tok = load(folder, trust_remote_code=True)
logits = model(mx.array([ids]))[0].tolist()
text = generate(model, tok, ids, max_tokens=16, sampler=make_sampler(temp=0.0))
print(json.dumps({"module": type(model).__module__, "logits": logits, "text": text, "refused": refused}))
"""


@pytest.fixture(scope="module", params=("llama", "qwen3", "gpt2", "qwen3_5_text"))
def converted(request, tmp_path_factory):
    from convert import convert_to_mlx

    root = tmp_path_factory.mktemp(request.param)
    hf = forged_folder(request.param, root / "forged")
    return request.param, convert_to_mlx(hf, root / "mlx", dtype="float32"), hf


def test_model_file_is_our_module(converted):
    family, folder, _ = converted
    from runtime_mlx.stock import family_module_file

    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_file"] == "sentinel_model.py" and cfg["model_type"] == family  # MLX side keeps the family
    assert (folder / "sentinel_model.py").read_bytes() == family_module_file(family).read_bytes()


def test_stock_mlx_lm_matches_our_runtime(converted, tmp_path):
    import mlx.core as mx
    from mlx_lm import generate
    from mlx_lm.sample_utils import make_sampler

    import runtime_mlx

    family, folder, _ = converted
    ids = prompt_ids()
    got = last_json(run_isolated(STOCK, str(folder), json.dumps(ids), block=("torch",), cache=tmp_path))
    model, tok = runtime_mlx.load(folder, lazy=False)
    logits = model(mx.array([ids]))[0]
    assert got["module"] == "custom_model"  # built from the folder's file, not from an installed runtime
    assert mx.allclose(mx.array(got["logits"]), logits, atol=1e-5, rtol=0).item(), family
    assert got["text"] == generate(model, tok, ids, max_tokens=16, sampler=make_sampler(temp=0.0))
    assert got["refused"] and "trust_remote_code=True" in got["refused"]


STOCK_CONVERT = IMPORT_PROBE + """
from mlx_lm.convert import convert
src, dst = sys.argv[1], sys.argv[2]
try:
    convert(src, mlx_path=dst + "-refused")
    refused = None
except ValueError as e:
    refused = str(e)
convert(src, mlx_path=dst, trust_remote_code=True)
print(json.dumps({"refused": refused}))
""".replace("from mlx_lm.convert", "import json\nfrom mlx_lm.convert")


def test_stock_mlx_lm_convert_of_the_hf_folder(converted, tmp_path):
    """The forged HF folder names our MLX model file too: stock convert (no torch) builds the same model."""
    import mlx.core as mx

    import runtime_mlx

    family, ours, hf = converted
    got = last_json(run_isolated(STOCK_CONVERT, str(hf), str(tmp_path / "stock"), block=("torch",),
                                 cache=tmp_path))
    assert got["refused"] and "trust_remote_code=True" in got["refused"]
    ids = mx.array([prompt_ids()])
    a, b = runtime_mlx.load_model(tmp_path / "stock")(ids), runtime_mlx.load_model(ours)(ids)
    assert mx.allclose(a, b, atol=1e-5, rtol=0).item(), family


def test_shared_counts_block_is_one_copy():
    """decoder.py, gpt2.py and qwen3_5.py each carry the layout reader (they must stand alone): same text."""
    from runtime_mlx.models import decoder, gpt2, qwen3_5

    for name in ("count_indices", "layer_counts"):
        sources = {inspect.getsource(getattr(m, name)) for m in (decoder, gpt2, qwen3_5)}
        assert len(sources) == 1, name
    assert inspect.getsource(decoder.PerLayerArgs) == inspect.getsource(gpt2.PerLayerArgs)
