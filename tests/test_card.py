"""sentinel card: README.md built only from the files present (config, forge report, verify reports)."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_mlx import planner
from runtime_mlx.card import write_card
from runtime_mlx.targets import GIB, get_targets
from runtime_mlx.verify import build_report

ROWS = [{"row": "baseline", "ppl": 11.234, "loss": 2.4, "tokens": 4096, "params": 361088, "bytes_fp16": 722176,
         "kv_bytes_per_token_fp16": 768, "q_heads_total": 24, "kv_heads_total": 12},
        {"row": "LoRA-only control", "ppl": 9.876, "loss": 2.3, "tokens": 4096, "params": 361088,
         "bytes_fp16": 722176, "kv_bytes_per_token_fp16": 768, "q_heads_total": 24, "kv_heads_total": 12},
        {"row": "forged", "ppl": 10.5, "loss": 2.35, "tokens": 4096, "params": 340000, "bytes_fp16": 680000,
         "kv_bytes_per_token_fp16": 704, "q_heads_total": 20, "kv_heads_total": 11}]


SOURCE = {"name": "tiny-base", "license": "Apache-2.0", "license_note": "Apache-2.0 upstream",
          "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}


@pytest.fixture(scope="module")
def forged_mlx(tmp_path_factory):
    """forge's layout: <out>/report.json beside <out>/model; the MLX folder converted into <out>/model-mlx."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_model

    from convert import convert_to_mlx
    from forge_cuda.checkpoint import save_model
    from forge_cuda.pruning.defrag import defrag, model_layout
    from sentinel.layout import LayerHeads

    out = tmp_path_factory.mktemp("forge-out")
    model = tiny_model("llama")
    defrag(model, model_layout(model).replace_layer(0, LayerHeads((0, 1, 4, 5), (0, 2))))
    save_model(model, out / "model")
    (out / "tiny-base").mkdir()  # the forge's source folder, as `models pull` leaves it
    (out / "tiny-base" / "SOURCE.json").write_text(json.dumps(SOURCE))
    (out / "report.json").write_text(json.dumps({"source": str(out / "tiny-base"), "config": {
        "model": "tiny-base", "domain": "code", "prune_level": 0.2, "cycles": 1, "prune": {"criterion": "taylor"}},
        "data": {"eval": {"tokens": 4096, "documents": 7}}, "rows": ROWS}))
    return convert_to_mlx(out / "model", out / "model-mlx", dtype="float16")


def _verify_json(folder, apple):
    facts = {"chip": "Apple M4" if apple else "AMD EPYC", "ram_bytes": 16 * GIB, "os": "x", "apple_silicon": apple,
             "system": "Darwin" if apple else "Linux", "machine": "arm64" if apple else "x86_64",
             "backend": "metal" if apple else "cpu", "mlx": "0", "mlx_lm": "0"}
    measured = {"load_seconds": 1.0, "load_peak_bytes": 1, "contexts": [
        {"context": 512, "prompt_tokens": 512, "decode_tokens": 8, "peak_bytes": 3 << 20, "prompt_tps": 900.0,
         "decode_tps": 321.5, "kv_bytes_per_token": 704, "runs": []}]}
    return build_report(planner.model_facts(folder), measured, facts, get_targets("macbook-pro-16gb"),
                        {"contexts": [512], "decode_tokens": 8, "repeats": 1})


def test_card_without_reports_claims_nothing(forged_mlx, tmp_path):
    import shutil

    lone = tmp_path / "lone"
    shutil.copytree(forged_mlx, lone)
    for stale in lone.glob("verify*.json"):
        stale.unlink()
    text = write_card(lone).read_text()
    assert "Converted by `sentinel convert` from `model` (llama)" in text  # provenance kept from convert's card
    assert "| 0 | 4/8 | 2/4 |" in text and "| 1 | 8/8 | 4/4 |" in text  # heads kept per layer
    assert "no quality numbers are claimed" in text and "Not verified anywhere yet" in text
    for word in ("verified |", "estimated", "Verified: Yes", "baseline"):
        assert word not in text


def test_card_from_report_and_verify_files(forged_mlx):
    (forged_mlx / "verify.json").write_text(json.dumps(_verify_json(forged_mlx, apple=False)))
    (forged_mlx / "verify-m4.json").write_text(json.dumps(_verify_json(forged_mlx, apple=True)))
    first = write_card(forged_mlx).read_text()
    assert write_card(forged_mlx).read_text() == first  # regenerated, never appended to
    assert "Base model: `HuggingFaceTB/SmolLM2-135M-Instruct` (Apache-2.0 upstream)." in first
    assert "Forged by Sentinel" not in first and "Converted by `sentinel convert` from `tiny-base`" in first
    assert str(forged_mlx.parent) not in first  # no machine paths: the source is named, not located
    assert "| forged | 10.500 | 340,000 | 680,000 | 704 | 20 | 11 |" in first
    assert "| LoRA-only control | 9.876 |" in first and "| baseline | 11.234 |" in first
    rows = [line for line in first.splitlines() if line.startswith("| macbook-pro-16gb")]
    assert len(rows) == 2
    linux = next(r for r in rows if "verify.json" in r)
    mac = next(r for r in rows if "verify-m4.json" in r)
    assert "| estimated | AMD EPYC" in linux and "(bound)" in linux
    assert "| verified | Apple M4" in mac and "| 321.5 |" in mac and "| 3.0 MiB |" in mac
    assert "| float16 |" in mac
    here = [line for line in first.splitlines() if line.startswith("| the measuring machine itself")]
    assert len(here) == 2 and all("| measured |" in line and "| 321.50 |" in line for line in here)
    size = planner.model_facts(forged_mlx).weight_bytes
    assert f"{size:,} bytes" in first


def test_card_cli_errors(forged_mlx, tmp_path):
    env = {**os.environ, "SENTINEL_HOME": str(tmp_path)}
    for args, msg in [((str(forged_mlx), "--report", str(tmp_path / "none.json")), "not found"),
                      ((str(tmp_path / "nothing"),), "not found")]:
        p = subprocess.run([sys.executable, "-m", "sentinel.cli", "card", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 1 and p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0
        assert msg in p.stderr


def test_card_and_verify_modules_need_no_torch(forged_mlx):
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers', 'peft'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import runtime_mlx.verify, runtime_mlx.planner\n"
            "from runtime_mlx.card import write_card\n"
            f"print(write_card({str(forged_mlx)!r}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1500:]
    assert p.stdout.strip().endswith("README.md")


def test_verdict_is_computed_from_the_rows():
    from sentinel.verdict import verdict

    rows = [{"row": "baseline", "ppl": 20.0, "params": 100}, {"row": "unpruned control", "ppl": 10.0, "params": 100},
            {"row": "forged", "ppl": 12.0, "params": 75}]
    assert verdict(rows) == ("forged is 25% smaller and 20.0% worse in held-out perplexity than the unpruned "
                             "control (better than the untuned base model).")
    assert verdict(rows[:1]) == ""


def _card(folder, report=None, rows=None, **top):
    """A card written from a report with ``rows`` (default ROWS) beside ``folder``; its text."""
    if rows is not None or top:
        base = json.loads((folder.parent / "report.json").read_text())
        report = folder.parent / "report-custom.json"
        report.write_text(json.dumps({**base, **top, "rows": ROWS if rows is None else rows}))
    return write_card(folder, report).read_text()


def test_the_hub_parses_the_card(forged_mlx, tmp_path):
    from huggingface_hub import ModelCard

    text = _card(forged_mlx)
    card = ModelCard.load(forged_mlx / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert card.data.pipeline_tag == "text-generation" and card.data.library_name == "mlx"
    assert {"sentinel", "pruned", "forged", "code", "mlx"} <= set(card.data.tags)
    assert text.startswith("---\n") and "**Verdict:** forged is 6% smaller" in text
    for machine in (str(tmp_path.parent), "/tmp/", "/root/", str(Path.home())):
        assert machine not in text


def test_bits_per_byte_lead_when_the_report_has_them(forged_mlx):
    rows = [dict(r, bpb=b) for r, b in zip(ROWS, (1.25, 1.1, 1.15))]
    text = _card(forged_mlx, rows=rows)
    assert "| model | bits per byte | perplexity | params |" in text
    assert "| forged | 1.1500 | 10.500 | 340,000 |" in text
    assert "forged is 6% smaller and 4.5% worse in held-out bits per byte than the unpruned control" in text


def test_nan_and_inf_are_never_printed_as_numbers(forged_mlx):
    rows = [dict(ROWS[0]), dict(ROWS[1], ppl=float("inf")), dict(ROWS[2], ppl=float("nan"))]
    text = _card(forged_mlx, rows=rows)
    assert "| forged | not measured |" in text and "| LoRA-only control | not measured |" in text
    assert "nan" not in text.lower().replace("nanos", "") and "inf" not in text.replace("info", "")
    assert "**Verdict:** not computed" in text


BAD_REPORTS = [
    ("list", [1, 2], "is not a forge report"),
    ("string", "report", "is not a forge report"),
    ("empty", {}, "has no result rows"),
    ("no-rows", {"config": {}, "data": {}}, "has no result rows"),
    ("rows-empty", {"rows": []}, "has no result rows"),
    ("rows-strings", {"rows": ["baseline", "forged"]}, "rows[0] must be an object, not str"),
    ("row-lacks-keys", {"rows": [{"row": "forged", "ppl": 3.0}]}, "needs a non-negative integer 'params'"),
    ("row-no-name", {"rows": [{"ppl": 3.0}]}, "rows[0] has no 'row' name"),
    ("row-no-measure", {"rows": [dict(ROWS[0], ppl=None) | {"row": "x"}]}, None),
    ("ppl-string", {"rows": [dict(ROWS[0], ppl="low")]}, "rows[0].ppl must be a number"),
    ("target-string", {"rows": ROWS, "config": {"prune": {"target_params": "0.75"}}},
     "'config.prune.target_params' must be a number"),
    ("config-list", {"rows": ROWS, "config": [1]}, "'config' must be an object"),
    ("data-string", {"rows": ROWS, "data": "x"}, "'data' must be an object"),
    ("tokens-string", {"rows": ROWS, "data": {"eval": {"tokens": "many"}}}, "'data.eval.tokens' must be"),
    ("not-json", None, "is not valid JSON"),
]


@pytest.mark.parametrize("name,report,message", BAD_REPORTS, ids=[b[0] for b in BAD_REPORTS])
def test_bad_reports_are_one_line_and_leave_the_card(forged_mlx, tmp_path, name, report, message):
    from click.testing import CliRunner

    from sentinel.cli import main

    _card(forged_mlx)
    before = (forged_mlx / "README.md").read_bytes()
    path = tmp_path / "report.json"
    path.write_text("{not json" if report is None else json.dumps(report))
    result = CliRunner().invoke(main, ["card", str(forged_mlx), "--report", str(path)])
    if message is None:  # a row whose measures are null: accepted, printed as not measured
        assert result.exit_code == 0, result.output
        assert "not measured" in (forged_mlx / "README.md").read_text()
        return
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0] and "Traceback" not in result.output
    assert (forged_mlx / "README.md").read_bytes() == before


BAD_VERIFY = [
    ("not-object", [1], "is not a sentinel verify report"),
    ("no-measured", {"targets": [], "device": {"ram_bytes": 1}, "format": "float16"}, "'measured' is missing"),
    ("no-contexts", {"targets": [], "device": {"ram_bytes": 1}, "format": "f16", "measured": {}},
     "'measured.contexts' must list"),
    ("target-incomplete", {"targets": [{"target": {"name": "m"}}], "device": {"ram_bytes": 1}, "format": "f16",
                           "measured": {"contexts": [{"context": 8, "peak_bytes": 1, "decode_tps": 2.0}]}},
     "targets[0] is incomplete"),
]


@pytest.mark.parametrize("name,data,message", BAD_VERIFY, ids=[b[0] for b in BAD_VERIFY])
def test_incomplete_verify_reports_are_one_line(forged_mlx, tmp_path, name, data, message):
    import shutil

    from sentinel.errors import SentinelError

    folder = tmp_path / "m"
    shutil.copytree(forged_mlx, folder)
    for stale in folder.glob("verify*.json"):
        stale.unlink()
    before = (folder / "README.md").read_bytes()
    (folder / "verify-bad.json").write_text(json.dumps(data))
    with pytest.raises(SentinelError, match=re.escape(message)):
        write_card(folder)
    assert (folder / "README.md").read_bytes() == before


def test_weights_must_agree_with_config_and_layout(forged_mlx, tmp_path):
    import shutil

    from sentinel.errors import SentinelError

    folder = tmp_path / "m"
    shutil.copytree(forged_mlx, folder)
    config = json.loads((folder / "config.json").read_text())
    layer0 = config["sentinel_layout"]["layers"][0]
    layer0["q_heads"], layer0["kv_heads"] = [0, 1, 2, 3, 4, 5], [0, 1, 2]  # valid, but 96 rows: the weights hold 64
    (folder / "config.json").write_text(json.dumps(config))
    before = (folder / "README.md").read_bytes()
    with pytest.raises(SentinelError, match=r"q_proj.weight has shape \(64, 64\), but config.json and its layout "
                                            r"imply 96 along dimension 0"):
        write_card(folder)
    assert (folder / "README.md").read_bytes() == before
    for weights in folder.glob("*.safetensors*"):
        weights.unlink()
    with pytest.raises(SentinelError, match="model\\*.safetensors"):
        write_card(folder)


def test_hf_folder_card_says_transformers(forged_mlx):
    from huggingface_hub import ModelCard

    hf = forged_mlx.parent / "model"
    text = write_card(hf).read_text()
    card = ModelCard.load(hf / "README.md")
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert "trust_remote_code=True" in text and "(MLX)" not in text
    assert "Forged by Sentinel from `tiny-base`" in text


def test_gguf_card_text_parses_and_carries_the_forge_rows(forged_mlx):
    from huggingface_hub import ModelCard

    from runtime_mlx.card import gguf_card_text

    text = gguf_card_text(forged_mlx.parent / "model", "forged-f16.gguf", "f16", 123_456)
    card = ModelCard(text)
    assert card.data.library_name == "gguf" and card.data.license == "apache-2.0"
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert {"gguf", "pruned", "forged", "code", "sentinel"} <= set(card.data.tags)
    assert "# forged-f16 (GGUF)" in text and "| forged | 10.500 |" in text and "123,456 bytes" in text
    assert "llama-cli -m" in text and str(forged_mlx.parent) not in text


def test_a_pruned_folder_finds_its_upstream_through_prune_report_and_the_catalogue(forged_mlx, tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    from runtime_mlx.card_meta import Provenance

    pruned = tmp_path / "pruned"
    shutil.copytree(forged_mlx.parent / "model", pruned)
    for earlier in ("README.md", "SOURCE.json"):  # a card another test wrote there would answer first
        (pruned / earlier).unlink(missing_ok=True)
    (pruned / "prune_report.json").write_text(json.dumps({"model": "smollm2-135m",
                                                          "source": str(tmp_path / "cache" / "smollm2-135m")}))
    known = {"smollm2-135m": Provenance("HuggingFaceTB/SmolLM2-135M-Instruct", "Apache-2.0", "upstream note")}
    text = write_card(pruned, known=known).read_text()
    data = ModelCard.load(pruned / "README.md").data
    assert data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"] and data.license == "apache-2.0"
    assert str(tmp_path) not in text and "(upstream note)" in text
