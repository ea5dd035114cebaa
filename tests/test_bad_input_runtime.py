"""Every bad input to the runtime commands gets exactly one `error:` line, a non-zero exit and no leftovers.

The real commands run through click's CliRunner (in process) on a tiny forged model; each case
checks the exit code, that stderr is one line starting with `error:` (no traceback), and that
no file appeared or changed anywhere under the test's folder.
"""

import json
import shutil
import struct

import pytest
from click.testing import CliRunner

from sentinel.cli import main
from test_runtime import chat_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return chat_folder(tmp_path_factory.mktemp("tiny") / "forged")


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def run_bad(root, args, input=None, code=None):
    """Run the CLI; assert one error line, a non-zero exit (``code`` when given), nothing written."""
    before = snapshot(root)
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and (code is None or result.exit_code == code), (result.exit_code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert snapshot(root) == before, "the command left files behind"
    return lines[0]


def config_of(folder):
    return json.loads((folder / "config.json").read_text())


def broken(tiny, tmp_path, kind):
    """A copy of the tiny model broken in one way."""
    folder = tmp_path / f"bad-{kind}"
    shutil.copytree(tiny, folder)
    cfg = config_of(folder)
    weights = folder / "model.safetensors"
    if kind == "config-list":
        (folder / "config.json").write_text("[1, 2, 3]")
    elif kind == "config-invalid-json":
        (folder / "config.json").write_text("{not json")
    elif kind == "heads-string":
        cfg["num_attention_heads"] = "nine"
    elif kind == "heads-zero":
        cfg["num_attention_heads"] = 0
    elif kind == "layers-bool":
        cfg["num_hidden_layers"] = True
    elif kind == "bert":
        cfg["model_type"] = "bert"
    elif kind == "no-weights":
        weights.unlink()
    elif kind == "pickle-only":
        weights.rename(folder / "pytorch_model.bin")
    elif kind == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        weights.write_bytes(struct.pack("<Q", 2**62) + b"\x00" * 64)
    elif kind == "header-not-json":
        weights.write_bytes(struct.pack("<Q", 16) + b"\xff" * 16 + b"\x00" * 64)
    if kind in ("heads-string", "heads-zero", "layers-bool", "bert"):
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


KINDS = ["config-list", "config-invalid-json", "heads-string", "heads-zero", "layers-bool", "bert", "no-weights",
         "pickle-only", "truncated", "garbage", "header-not-json"]
COMMANDS = {
    "generate": lambda m: ["generate", m, "-p", "hello", "--max-tokens", "2"],
    "chat": lambda m: ["chat", m, "--max-tokens", "2"],
    "serve": lambda m: ["serve", m, "--port", "1"],  # refused before the port is ever tried
    "verify": lambda m: ["verify", m, "--contexts", "8", "--decode-tokens", "1", "--repeats", "1"],
    "plan": lambda m: ["plan", m],
    "card": lambda m: ["card", m],
}
MESSAGES = {"config-list": "must hold a JSON object", "config-invalid-json": "is not valid JSON",
            "heads-string": "'num_attention_heads' must be a positive integer, got 'nine'",
            "heads-zero": "'num_attention_heads' must be a positive integer, got 0",
            "layers-bool": "'num_hidden_layers' must be a positive integer, got True",
            "bert": "unsupported model family 'bert'", "no-weights": "model*.safetensors",
            "pickle-only": "model*.safetensors", "truncated": "is truncated",
            "garbage": "header length 4,611,686,018,427,387,904 bytes", "header-not-json": "corrupt safetensors header"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", KINDS)
def test_broken_model_folder_is_one_line(command, kind, tiny, tmp_path):
    folder = broken(tiny, tmp_path, kind)
    line = run_bad(tmp_path, COMMANDS[command](folder), input="hello\n", code=1)
    want = MESSAGES[kind]
    if command == "plan" and kind == "pickle-only":
        want = "holds only pickle weights (pytorch_model.bin)"
    if command == "plan" and kind == "no-weights":
        want = "has no safetensors weights; to plan from the config alone, give"
    assert want in line


def test_plan_without_weights_uses_config(tiny, tmp_path):
    folder = broken(tiny, tmp_path, "no-weights")
    result = CliRunner().invoke(main, ["plan", str(folder / "config.json"), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["facts"]["source"] == "config.json"


def test_missing_folder(tmp_path):
    for command in COMMANDS.values():
        assert " not found" in run_bad(tmp_path, command(tmp_path / "nope"), code=1)


BAD_OPTIONS = [
    (["generate", "{m}", "-p", "x", "--temp", "-1"], "'--temp': -1.0 is not in the range x>=0"),
    (["generate", "{m}", "-p", "x", "--temp", "nan"], "'--temp': 'nan' is not a finite number"),
    (["generate", "{m}", "-p", "x", "--temp", "inf"], "'--temp': 'inf' is not a finite number"),
    (["generate", "{m}", "-p", "x", "--top-p", "1.5"], "'--top-p': 1.5 is not in the range 0<=x<=1"),
    (["generate", "{m}", "-p", "x", "--max-tokens", "0"], "'--max-tokens': 0 is not in the range x>=1"),
    (["generate", "{m}", "-p", "x", "--seed", "-1"], "'--seed': -1 is not in the range"),
    (["generate", "{m}", "-p", "x", "--repetition-penalty", "0"], "'--repetition-penalty': 0.0 is not in the range x>0"),
    (["generate", "{m}", "-p", "x", "--long-prompt", "maybe"], "'--long-prompt': 'maybe' is not one of"),
    (["generate", "{m}"], "Missing option '--prompt'"),
    (["chat", "{m}", "--max-kv-size", "0"], "'--max-kv-size': 0 is not in the range x>=16"),
    (["verify", "{m}", "--repeats", "0"], "'--repeats': 0 is not in the range x>=1"),
    (["verify", "{m}", "--decode-tokens", "0"], "'--decode-tokens': 0 is not in the range x>=1"),
    (["verify", "{m}", "--contexts", "64,abc"], "'--contexts': '64,abc' is not a comma-separated list"),
    (["verify", "{m}", "--contexts", "0"], "'--contexts': 0 is not in the range 1<=x<=16777216"),
    (["plan", "{m}", "--context", "99999999999999999999"], "99999999999999999999 is not in the range 1<=x<=16777216"),
    (["plan", "{m}", "--context", "-5"], "-5 is not in the range"),
    (["plan", "{m}", "--dtype", "float8"], "'--dtype': 'float8' is not one of"),
    (["serve", "{m}", "--port", "99999"], "'--port': 99999 is not in the range 1<=x<=65535"),
    (["serve", "{m}", "--port", "-1"], "'--port': -1 is not in the range 1<=x<=65535"),
    (["serve", "{m}", "--host", "999.1.1.1"], "'--host': '999.1.1.1' is not an IP address or a host name"),
    (["serve", "{m}", "--host", "bad host!"], "is not an IP address or a host name"),
    (["serve", "{m}", "--max-body-bytes", "0"], "'--max-body-bytes': 0 is not in the range x>=1"),
    (["serve", "{m}", "--mod", "/etc"], "No such option '--mod'"),  # serve has no mlx_lm.server pass-through
    (["serve", "{m}", "--allowed-origins", "*"], "No such option '--allowed-origins'"),
    (["serve", "{m}", "--no-such-mlx-flag"], "No such option '--no-such-mlx-flag'"),
    (["generate", "{m}", "-p", "x", "--bogus"], "No such option '--bogus'"),
    (["bogus-command"], "No such command 'bogus-command'"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a[2:] if len(a) > 2 else a) for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_click_usage_errors(args, message, tiny, tmp_path):
    line = run_bad(tmp_path, [a.replace("{m}", str(tiny)) for a in args], code=2)
    assert message in line


@pytest.mark.parametrize("args,message", [
    (["verify", "{m}", "--target", "bogus"], "unknown target 'bogus'"),
    (["plan", "{m}", "--target", "bogus"], "unknown target 'bogus'"),
])
def test_bad_values_found_by_our_checks(args, message, tiny, tmp_path):
    assert message in run_bad(tmp_path, [a.replace("{m}", str(tiny)) for a in args], code=1)


def test_prompt_problems(tiny, tmp_path):
    gen = ["generate", str(tiny), "--max-tokens", "2"]
    assert run_bad(tmp_path, gen + ["-p", "", "--raw"], code=1) == "error: the prompt is empty"
    assert run_bad(tmp_path, gen + ["-p", "   \n", "--raw"], code=1) == "error: the prompt is empty"
    assert run_bad(tmp_path, gen + ["-p", "-"], input=b"\xff\xfehello", code=1) == \
        "error: stdin is not UTF-8 text (byte 0xff at offset 0)"
    long = "hello world " * 200  # ~600 tokens; the tiny model's context is 128
    line = run_bad(tmp_path, gen + ["-p", long], code=1)
    assert line.startswith("error: the prompt is ") and "the model's context is 128" in line
    result = CliRunner().invoke(main, gen + ["-p", long, "--long-prompt", "truncate", "-v"])
    assert result.exit_code == 0, result.stderr
    assert "prompt: 126 new tokens" in result.stderr  # context 128 - 2 tokens for the reply


def test_chat_input_problems(tiny, tmp_path):
    chat = ["chat", str(tiny), "--max-tokens", "2"]
    assert run_bad(tmp_path, chat, input=b"hello\n\xff\n", code=1) == \
        "error: input is not UTF-8 text (byte 0xff at offset 0)"
    line = run_bad(tmp_path, chat, input="hello world " * 200 + "\n", code=1)
    assert line.startswith("error: the conversation is ") and "context is 128" in line
    # truncate: old turns are dropped so that a long conversation keeps going
    turns = "".join(f"turn {i} " + "word " * 30 + "\n" for i in range(6)) + "/stats\n"
    result = CliRunner().invoke(main, chat + ["--long-prompt", "truncate"], input=turns)
    assert result.exit_code == 0, result.stderr
    assert "compute: float32" in result.stdout.strip().splitlines()[-1]


def test_verify_out_under_a_file(tiny, tmp_path):
    (tmp_path / "file").write_text("x")
    line = run_bad(tmp_path, ["verify", tiny, "--out", tmp_path / "file" / "sub"], code=1)
    assert line == f"error: cannot create {tmp_path / 'file' / 'sub'}: {tmp_path / 'file'} is a file, not a folder"


def test_top_level_help_is_not_cut():
    out = CliRunner().invoke(main, ["--help"]).stdout
    commands = out.split("Commands:")[1]
    assert "..." not in commands
    assert "Generate one reply to the --prompt text with MODEL, streamed to stdout." in " ".join(out.split())


def walk(command, path=("sentinel",)):
    import click

    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_option_of_every_command_has_help():
    """Every option of every command says what it does; verify/plan --target list the target names."""
    from runtime_mlx.targets import BUILTIN

    commands = dict(walk(main))
    assert {"sentinel generate", "sentinel chat", "sentinel serve", "sentinel verify", "sentinel plan",
            "sentinel card", "sentinel convert"} <= set(commands)
    missing = [f"{name} {p.opts[0]}" for name, command in commands.items() for p in command.params
               if p.param_type_name == "option" and not p.help]
    assert missing == []
    for name in ("sentinel verify", "sentinel plan"):
        target = next(p for p in commands[name].params if p.name == "targets")
        assert all(t in target.help for t in BUILTIN)


def test_a_real_bug_still_prints_its_traceback():
    """Only user mistakes are one line: an unexpected exception keeps its traceback and asks for a report."""
    from sentinel.cli import BUG_HINT, SentinelGroup

    group = SentinelGroup("g")

    @group.command("boom")
    def boom():
        return 1 / 0

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 70
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == BUG_HINT
