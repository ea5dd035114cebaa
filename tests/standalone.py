"""Forged tiny folders of every family and a Python that cannot import this project.

``run_isolated`` starts ``python -I -S`` with only the environment's site-packages on
sys.path: no project root, no editable-install hook (.pth files are not processed), so
``import sentinel`` fails there, like on a machine where only the libraries are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

from sentinel.layout import LayerHeads

SITE = sysconfig.get_paths()["purelib"]
OURS = ("sentinel", "forge_cuda", "runtime_mlx", "convert")
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_5_text", "gpt2")

# heads pruned per layer (per-layer KV counts too) and MLP channels cut, in runs (stored as v3 ranges)
LAYERS = {
    "llama_like": {0: LayerHeads((0, 2, 4, 6), (0, 1, 2, 3), mlp_channels=tuple(range(8, 72))),
                   1: LayerHeads((0, 1, 4, 5, 6, 7), (0, 2, 3), mlp_channels=(*range(0, 16), *range(40, 88)))},
    "gpt2": {0: LayerHeads((0, 2), (0, 2), mlp_channels=tuple(range(0, 64))), 1: LayerHeads((1, 2, 3), (1, 2, 3))},
    "qwen3_5_text": {3: LayerHeads((0, 1, 4, 5), (0, 2), mlp_channels=tuple(range(10, 74)))},
}


def forged_folder(family: str, out: Path) -> Path:
    """A tiny random model of ``family``, pruned (heads + MLP channels) and saved by save_model."""
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout
    from tiny import tiny_model
    from tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tok))
    layout = model_layout(model)
    for i, layer in LAYERS.get(family, LAYERS["llama_like"]).items():
        layout = layout.replace_layer(i, layer)
    defrag(model, layout)
    return save_model(model, out, tokenizer=tok)


def prompt_ids(vocab: int = 320) -> list[int]:
    return torch.randint(0, vocab, (1, 10), generator=torch.Generator().manual_seed(3))[0].tolist()


def run_isolated(code: str, *args: str, block: tuple[str, ...] = (), cache: Path | None = None,
                 timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python that sees site-packages only (and not ``block``ed modules)."""
    prelude = (f"import sys\nsys.path.append({SITE!r})\n"
               + "".join(f"sys.modules[{name!r}] = None\n" for name in block))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if cache is not None:  # transformers copies remote code into its modules cache
        env.update(HF_HOME=str(cache), HF_MODULES_CACHE=str(cache / "modules"))
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code, *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cache or "/", env=env)


IMPORT_PROBE = """
for name in {ours!r}:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{{name}} is importable in the isolated interpreter")
""".format(ours=OURS)


def last_json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    return json.loads(line[line.index('{"'):])  # after transformers' unanswered "[y/N]" prompt, if any
