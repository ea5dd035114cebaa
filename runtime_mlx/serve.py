"""``sentinel serve``: mlx-lm's OpenAI-compatible server, opening models with our classes.

mlx-lm's server loads models through the module-level ``load`` it imported
from ``mlx_lm.utils``; pointing that one name at ours (in this process only)
keeps every other part of the server (batching, prompt cache, streaming,
tool calls) exactly as mlx-lm ships it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def sentinel_load(path_or_hf_repo, tokenizer_config=None, model_config=None, adapter_path=None, lazy=False,
                  return_config=False, revision=None, trust_remote_code=False):
    """Drop-in for ``mlx_lm.utils.load`` that builds our per-layer-head classes."""
    from mlx_lm.utils import load_adapters, load_config, load_tokenizer

    from runtime_mlx.loader import load_model, resolve_mlx_folder

    folder = resolve_mlx_folder(path_or_hf_repo)
    model = load_model(folder, lazy=lazy)
    if adapter_path is not None:
        model = load_adapters(model, adapter_path)
        model.eval()
    config = load_config(folder)
    tokenizer = load_tokenizer(folder, tokenizer_config, eos_token_ids=config.get("eos_token_id"))
    return (model, tokenizer, config) if return_config else (model, tokenizer)


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8080, extra_args: tuple[str, ...] = ()) -> None:
    """Run mlx-lm's server (blocking) on ``model``; ``extra_args`` are mlx_lm.server flags."""
    from mlx_lm import server

    from runtime_mlx.loader import load_model, resolve_mlx_folder

    folder = resolve_mlx_folder(model)
    load_model(folder)  # fail here, in one line, before the server starts listening
    server.load = sentinel_load
    sys.argv = ["sentinel serve", "--model", str(folder), "--host", host, "--port", str(port), *extra_args]
    server.main()
