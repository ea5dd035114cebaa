"""An Ollama ``Modelfile`` beside the GGUF, so ``ollama create NAME -f X.Modelfile`` is one command.

Ollama templates are Go templates, HF chat templates are Jinja: the two chat
formats our families use (ChatML for SmolLM2/Qwen2, the Llama-3 header format)
are recognised by their markers and written as the equivalent Go template; a
default system prompt written literally in the Jinja template becomes
``SYSTEM``. Anything else gets no TEMPLATE line (Ollama then falls back to its
own detection from the GGUF's ``tokenizer.chat_template``) and says so.
Sampling parameters come from generation_config.json when it sets them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
          "<|im_start|>assistant\n")
LLAMA3 = ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
          "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
STYLES = {"chatml": (CHATML, ["<|im_start|>", "<|im_end|>"]),
          "llama3": (LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])}
PARAMS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "repetition_penalty": "repeat_penalty"}
MAX_DEFAULT_CTX = 4096


def chat_style(template: str | None) -> str | None:
    if not template:
        return None
    if "<|im_start|>" in template and "<|im_end|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template and "<|eot_id|>" in template:
        return "llama3"
    return None


def default_system(template: str, style: str) -> str | None:
    """A system prompt the Jinja template inserts when the chat has none (SmolLM2, Qwen2 do)."""
    nl = r"(?:\\n|\n)"  # an escaped newline inside a Jinja string, or a real one
    pattern = (rf"<\|im_start\|>system{nl}(.+?)<\|im_end\|>" if style == "chatml"
               else rf"<\|start_header_id\|>system<\|end_header_id\|>{nl}{nl}(.+?)<\|eot_id\|>")
    found = re.search(pattern, template)
    # an unescaped quote means the string literal ended: the prompt is computed, not written out
    if not found or "{{" in found.group(1) or "{%" in found.group(1) or re.search(r"(?<!\\)['\"]", found.group(1)):
        return None
    return found.group(1).replace("\\n", "\n").replace("\\'", "'").replace('\\"', '"')


def render_modelfile(gguf_name: str, chat_template: str | None, eos: str | None,
                     generation: Mapping[str, Any], context: int, license: str | None = None) -> str:
    """The Modelfile text: FROM, TEMPLATE, SYSTEM, stop tokens, parameters and the LICENSE."""
    lines = [f"# Ollama Modelfile written by `sentinel convert --to gguf`: ollama create NAME -f {gguf_name[:-5]}.Modelfile",
             f"FROM ./{gguf_name}"]
    style = chat_style(chat_template)
    stops: list[str] = []
    if style:
        template, stops = STYLES[style]
        lines.append(f'TEMPLATE """{template}"""')
        system = default_system(chat_template or "", style)
        if system:
            lines.append(f'SYSTEM """{system}"""')
    else:
        lines.append("# no TEMPLATE: the chat template is not ChatML or Llama-3; Ollama detects one from the "
                     "GGUF's tokenizer.chat_template" if chat_template else "# no chat template in the checkpoint")
    if eos and eos not in stops:
        stops = stops + [eos]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    for key, name in PARAMS.items():
        value = generation.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lines.append(f"PARAMETER {name} {value}")
    lines.append(f"PARAMETER num_ctx {min(context, MAX_DEFAULT_CTX)}")
    if license:
        lines.append(f'LICENSE """{license}"""')
    return "\n".join(lines) + "\n"


def read_generation_config(folder: Path) -> dict[str, Any]:
    path = folder / "generation_config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
