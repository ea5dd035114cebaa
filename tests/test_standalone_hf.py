"""A forged folder loads in stock transformers with trust_remote_code=True, Sentinel not importable.

Acceptance for issue 20 item 1: for every family we forge, an interpreter that sees only
site-packages (torch, transformers, safetensors; no project code) loads the folder with
AutoModelForCausalLM/AutoTokenizer, and gets our loader's logits (<= 1e-5, fp32) and the
same 16 greedy tokens; without trust_remote_code it gets transformers' error naming the flag.
"""

import json

import pytest
import torch

from standalone import FAMILIES, IMPORT_PROBE, forged_folder, last_json, prompt_ids, run_isolated

STOCK = IMPORT_PROBE + """
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, ids = sys.argv[1], json.loads(sys.argv[2])
try:
    AutoModelForCausalLM.from_pretrained(folder)
    refused = None
except ValueError as e:
    refused = str(e)
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
x = torch.tensor([ids])
with torch.no_grad():
    logits = model(x).logits[0].tolist()
out = model.generate(x, max_new_tokens=16, do_sample=False, min_new_tokens=16)[0, len(ids):].tolist()
print(json.dumps({"class": type(model).__name__, "logits": logits, "greedy": out,
                  "vocab": len(tok), "text": tok.decode(out), "refused": refused}))
"""


@pytest.fixture(scope="module", params=FAMILIES)
def forged(request, tmp_path_factory):
    return request.param, forged_folder(request.param, tmp_path_factory.mktemp(request.param) / "forged")


def ours(folder, ids):
    from forge_cuda.checkpoint import load_model

    model = load_model(folder)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]
    greedy = model.generate(x, max_new_tokens=16, min_new_tokens=16, do_sample=False)[0, len(ids):].tolist()
    return logits, greedy


def imported(path) -> set[str]:
    """Top-level packages a file imports (relative imports keep their dot)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.add("." * node.level + (node.module or "") if node.level else node.module.split(".")[0])
    return names


def test_folder_names_its_modelling_file(forged):
    family, folder = forged
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == f"sentinel_{family}"
    assert cfg["auto_map"]["AutoModelForCausalLM"].startswith("modeling_sentinel.Sentinel")
    assert cfg["auto_map"]["AutoConfig"].startswith("configuration_sentinel.Sentinel")
    assert "import torch" not in (folder / "configuration_sentinel.py").read_text()  # AutoTokenizer: no torch
    assert cfg["model_file"] == "sentinel_model.py"  # mlx-lm's hook: stock `mlx_lm convert --trust-remote-code`
    assert imported(folder / "modeling_sentinel.py") <= {"torch", "transformers", ".configuration_sentinel"}
    assert imported(folder / "configuration_sentinel.py") <= {"transformers"}  # AutoTokenizer: no torch needed


def test_stock_transformers_matches_our_loader(forged, tmp_path):
    family, folder = forged
    ids = prompt_ids()
    proc = run_isolated(STOCK, str(folder), json.dumps(ids), cache=tmp_path)
    got = last_json(proc)
    logits, greedy = ours(folder, ids)
    assert got["class"].startswith("Sentinel")
    assert torch.allclose(torch.tensor(got["logits"]), logits, atol=1e-5, rtol=0), family
    assert got["greedy"] == greedy and len(greedy) == 16
    assert got["vocab"] == 320
    # without trust_remote_code: transformers' own error naming the flag, never a mis-shaped model
    assert got["refused"] and "trust_remote_code=True" in got["refused"]


def test_modelling_file_reads_every_format_version():
    from types import SimpleNamespace

    from forge_cuda.modeling_sentinel import count_indices, layer_shapes

    assert count_indices([[0, 512], [576, 1536]]) == 512 + 960 and count_indices([0, 2, 3, 7]) == 4
    assert count_indices([]) == 0
    layers = [{"q_heads": [0, 2], "kv_heads": [0]}, {"q_heads": [[0, 4]], "kv_heads": [[0, 2]],
                                                     "mlp_channels": [[0, 64], [96, 128]]}]
    for version in (1, 2, 3):
        cfg = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              sentinel_layout={"format_version": version, "layers": layers})
        assert layer_shapes(cfg) == [(2, 1, None), (4, 2, 96)]
    with pytest.raises(ValueError, match="format_version"):
        layer_shapes(SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     sentinel_layout={"format_version": 9, "layers": layers}))
