"""Chat and generate on a forged tiny model: mlx-lm's generator, the cache carried across turns."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from test_runtime import chat_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return chat_folder(tmp_path_factory.mktemp("chat") / "forged")


def fresh_reply(model, tokenizer, messages, max_tokens):
    from mlx_lm import generate

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return generate(model, tokenizer, prompt, max_tokens=max_tokens), len(prompt)


def test_second_turn_prefills_only_new_tokens(folder):
    import runtime_mlx
    from runtime_mlx.chat import ChatSession, Sampling

    model, tokenizer = runtime_mlx.load(folder)
    session = ChatSession(model, tokenizer, system="be brief", sampling=Sampling(max_tokens=6))
    first = "".join(session.send("hello world"))
    after_first = session.cache_offset
    assert after_first == len(session.cached) > 0

    second = "".join(session.send("python lists"))
    history = session.messages[:-1]
    want, full_len = fresh_reply(model, tokenizer, history, 6)
    assert second == want  # greedy reply from the reused cache == reply from a full prefill
    kept = full_len - session.stats.prompt_tokens
    assert 0 < session.stats.prompt_tokens < full_len
    assert kept <= after_first  # what was not prefilled again came from the first turn's cache
    assert session.cache_offset == full_len + session.stats.generation_tokens
    assert first == fresh_reply(model, tokenizer, history[:2], 6)[0]


def test_reset_empties_the_cache(folder):
    import runtime_mlx
    from runtime_mlx.chat import ChatSession, Sampling

    model, tokenizer = runtime_mlx.load(folder)
    session = ChatSession(model, tokenizer, sampling=Sampling(max_tokens=3))
    "".join(session.send("hello"))
    assert session.cache_offset > 0
    session.reset()
    assert session.cache_offset == 0 and session.messages == []


def test_chat_cli_in_a_pipe(folder):
    """Two turns, /stats after each, /exit: the second turn's prefill is only the new message."""
    lines = "hello world\n/stats\npython code\n/stats\n/reset\n/exit\nnever read\n"
    proc = subprocess.run([sys.executable, "-m", "sentinel.cli", "chat", str(folder), "--max-tokens", "5",
                           "--system", "be brief"], input=lines, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = [line for line in proc.stdout.splitlines() if line.startswith("prompt: ")]
    assert len(stats) == 2, proc.stdout
    first_new = int(stats[0].split()[1])
    second_new = int(stats[1].split()[1])
    cache_after_first = int(stats[0].rsplit("cache: ", 1)[1].split()[0])
    cache_after_second = int(stats[1].rsplit("cache: ", 1)[1].split()[0])
    assert second_new < first_new + cache_after_first  # history was not prefilled again
    assert cache_after_second > cache_after_first
    assert "[conversation reset]" in proc.stdout


def test_generate_cli_streams_greedy_text(folder):
    import runtime_mlx
    from mlx_lm import generate

    from sentinel.cli import main

    result = CliRunner().invoke(main, ["generate", str(folder), "--prompt", "hello world", "--max-tokens", "7", "-v"])
    assert result.exit_code == 0, result.output
    model, tokenizer = runtime_mlx.load(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello world"}], add_generation_prompt=True)
    assert result.stdout == generate(model, tokenizer, prompt, max_tokens=7) + "\n"
    assert "decode:" in result.stderr


def test_generate_sampling_flags_and_seed(folder):
    from sentinel.cli import main

    args = ["generate", str(folder), "-p", "hi", "--max-tokens", "8", "--temp", "1.5", "--top-p", "0.9",
            "--top-k", "20", "--min-p", "0.01", "--repetition-penalty", "1.2", "--seed"]
    a = CliRunner().invoke(main, args + ["3"])
    b = CliRunner().invoke(main, args + ["3"])
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_generate_unconverted_name_says_what_to_run():
    from sentinel.cli import main

    result = CliRunner().invoke(main, ["generate", "smollm2-135m", "-p", "hi"])
    assert result.exit_code == 1
    assert "error: smollm2-135m is not converted to MLX yet: run `sentinel convert smollm2-135m --to mlx`" in result.output
