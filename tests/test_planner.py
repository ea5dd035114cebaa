"""The memory planner: hand-derived numbers on a tiny config, exact weight bytes against real files."""

import json
import subprocess
import sys

import mlx.core as mx
import pytest

from runtime_mlx import planner
from runtime_mlx.targets import GIB, Target, all_targets, get_targets
from sentinel.errors import SentinelError

# A tiny pruned llama config: layer 0 keeps 4 of 8 query heads and 2 of 4 KV heads.
CONFIG = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 16,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "dtype": "float16",
          "sentinel_layout": {"format_version": 1, "base_num_attention_heads": 8, "base_num_key_value_heads": 4,
                              "layers": [{"q_heads": [0, 1, 2, 3], "kv_heads": [0, 1]},
                                         {"q_heads": list(range(8)), "kv_heads": [0, 1, 2, 3]}]}}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return path


def test_hand_derived_plan_from_config_alone(config_file):
    facts = planner.model_facts(config_file)
    assert facts.source == "config.json" and facts.dtype == "F16"
    # params: embed + lm_head + final norm, layer 0 (q 64, kv 32 rows), layer 1 (q 128, kv 64 rows)
    layer0 = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 96 * 64 + 2 * 64
    layer1 = 128 * 64 + 2 * 64 * 64 + 64 * 128 + 3 * 96 * 64 + 2 * 64
    params = 2 * 100 * 64 + 64 + layer0 + layer1
    assert params == 86848
    assert facts.weight_bytes == 2 * params
    assert facts.kv_bytes_per_token == 2 * (2 + 4) * 16 * 2  # K and V, kv heads per layer, head_dim, fp16

    # 300 tokens: cache allocated in 256-token steps -> 512 slots
    peak = planner.predict_peak(facts, 300, "cpu")
    assert peak["kv_cache"] == 512 * 384
    # prefill: chunk of 299 tokens (the last one goes with the first decode step); head_dim 16 -> scores kept
    n = 299
    residual = 2 * n * 64 * 2
    attention = n * (2 * 8 + 4 * 4) * 16 * 2 + 8 * n * n * 2 + n * n * 4
    assert attention > 3 * n * 96 * 2  # attention, not the MLP, is the larger live set here
    assert peak["activations"] == residual + attention
    assert peak["overhead"] == 2 * 100 * 4
    assert peak["total"] == 2 * params + 512 * 384 + residual + attention + 800
    # 256-token prompt + 8 decoded: the peak is prefilling 255 tokens into a 256-slot cache, not the
    # final 512-slot cache with one token's activations
    n = 255
    chunk = 2 * n * 64 * 2 + n * (2 * 8 + 4 * 4) * 16 * 2 + 8 * n * n * 2 + n * n * 4
    decode = 2 * 64 * 2 + (2 * 8 + 4 * 4) * 16 * 2 + 8 * 264 * 2 + 264 * 4
    assert 256 * 384 + chunk > 512 * 384 + decode
    split = planner.predict_peak(facts, 264, "cpu", prompt=256)
    assert (split["kv_cache"], split["activations"]) == (256 * 384, chunk)
    assert planner.predict_peak(facts, 264, "cpu", prompt=1)["kv_cache"] == 512 * 384  # decode-dominated
    # head_dim 16 has no fused Metal kernel: Metal plans the same activations
    assert planner.predict_peak(facts, 300, "metal")["activations"] == peak["activations"]


def test_prefill_chunks_follow_mlx_lm():
    assert planner.prefill_chunks(5000, 2048) == [(2048, 2048), (2048, 4096), (903, 4999), (1, 5000)]
    assert planner.prefill_chunks(1) == [(1, 1)]


def test_fit_margin_and_decode_bound(config_file):
    facts = planner.model_facts(config_file)
    target = Target("t", ram_gb=0.003, bandwidth_gbs=100)
    r = planner.fit(facts, target, 300)
    assert r["working_set_bytes"] == int(int(0.003 * GIB) * 2 / 3)
    assert r["margin_bytes"] == r["working_set_bytes"] - r["predicted_peak_bytes"]
    assert r["fits"] is False  # ~2.1 MB working set < ~2.5 MB peak
    assert planner.fit(facts, Target("big", 1, 100), 300)["fits"] is True
    assert r["decode_tps_upper_bound"] == pytest.approx(100e9 / (2 * 86848 + 384 * 300))


def _tiny_hf(tmp_path):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from tiny import tiny_model

    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout
    from sentinel.layout import LayerHeads

    model = tiny_model("qwen2", hidden_size=64, tie_word_embeddings=False)
    layer = model_layout(model).layers[2]
    layout = model_layout(model).replace_layer(0, LayerHeads((0, 1, 4, 5), (0, 2))).replace_layer(
        2, LayerHeads(layer.q_heads, layer.kv_heads, mlp_channels=tuple(range(0, 96, 3))))  # irregular MLP width
    defrag(model, layout)
    return save_model(model, tmp_path / "hf")


@pytest.mark.parametrize("quantize", [None, 4])
def test_weight_bytes_match_converted_files(tmp_path, quantize):
    from convert import convert_to_mlx

    src = _tiny_hf(tmp_path)
    out = convert_to_mlx(src, tmp_path / "mlx", dtype="float16", quantize=quantize, group_size=32)
    on_disk = sum(a.nbytes for f in out.glob("*.safetensors") for a in mx.load(str(f)).values())
    stored = planner.model_facts(out)
    assert stored.source == "safetensors headers"
    assert stored.weight_bytes == on_disk
    # predicted from the HF folder before converting: shapes from its headers, then from config.json alone
    assert planner.model_facts(src, "float16", quantize, 32).weight_bytes == on_disk
    assert planner.model_facts(src / "config.json", "float16", quantize, 32).weight_bytes == on_disk
    kv = 2 * 16 * (2 + 4 + 4) * 2  # head_dim 16, KV heads per layer 2/4/4, fp16
    assert stored.kv_bytes_per_token == kv


def test_user_targets_extend_and_override(monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    (home / "targets.json").write_text(json.dumps({"studio-64gb": {"ram_gb": 64, "bandwidth_gbs": 400},
                                                   "macbook-pro-16gb": {"bandwidth_gbs": 150}}))
    table = all_targets()
    assert table["studio-64gb"].working_set_bytes == int(64 * GIB * 2 / 3)
    assert table["macbook-pro-16gb"].bandwidth_gbs == 150 and table["macbook-pro-16gb"].ram_gb == 16
    assert [t.name for t in get_targets("studio-64gb,macbook-air-8gb")] == ["studio-64gb", "macbook-air-8gb"]
    (home / "targets.json").write_text(json.dumps({"x": {"ram_gb": 8}}))
    with pytest.raises(SentinelError, match="lacks bandwidth_gbs"):
        all_targets()


def _cli(*args, env_home):
    env = {**__import__("os").environ, "SENTINEL_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "sentinel.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_plan_cli_and_one_line_errors(config_file, tmp_path):
    ok = _cli("plan", str(config_file), "--target", "macbook-pro-16gb", "--context", "300", "--json",
              env_home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["status"] == "estimated"
    assert result["targets"][0]["fits"][0]["fits"] is True
    for args, msg, code in [(("plan", str(tmp_path / "nope")), "not found", 1),
                            (("plan", str(config_file), "--target", "pdp-11"), "unknown target 'pdp-11'", 1),
                            (("plan", str(config_file), "--context", "a,b"), "comma-separated list of integers", 2),
                            (("plan", "smollm2-135m"), "neither pulled nor converted here", 1)]:
        bad = _cli(*args, env_home=tmp_path)
        assert bad.returncode == code  # 2: click's usage error for a bad option value
        assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: ") and msg in bad.stderr
