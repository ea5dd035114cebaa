"""Bad pruning requests fail in one error line before any model is loaded or any folder created (issues 17, 22)."""

import time

import pytest
from click.testing import CliRunner

from forge_cuda.pruning.options import CRITERIA, PruneOptions
from forge_cuda.pruning.preflight import check_reachable
from forge_cuda.pruning.step import prune_model
from sentinel.cli import main
from sentinel.cli.pruning_options import CRITERIA as CLI_CRITERIA
from sentinel.errors import SentinelError
from tiny import tiny_model, tokens
from tiny_tokenizer import save_tiny_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_checkpoint(tiny_model("llama", vocab_size=320), tmp_path_factory.mktemp("src") / "tiny")


@pytest.fixture
def no_loading(monkeypatch):
    """Loading weights is what these requests must never reach."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")
    for module in ("forge_cuda.checkpoint", "forge_cuda.forge", "forge_cuda.pruning.command"):
        monkeypatch.setattr(f"{module}.load_model", refuse, raising=False)


def _fails_cleanly(result, workdir, before: set, message: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert not isinstance(result.exception, AssertionError), result.exception
    assert message in result.stderr
    assert set(workdir.iterdir()) == before  # nothing created, not even out.partial


FORGE_CASES = [
    (["--criterion", "entropy"], "entropy scores attention heads only and a size target also cuts MLP channels"),
    (["--mitosis-rounds", "1", "--target-params", "0.75"], "mitosis regrows parameters"),
    (["--mitosis-rounds", "1"], "mitosis regrows parameters"),  # the default size target
    (["--mitosis-rounds", "1", "--mlp-level", "0.2"], "needs --prune-level above 0"),
    (["--prune-level", "nan"], "--prune-level must be a number, got nan"),
    (["--target-params", "nan"], "--target-params must be a number, got nan"),
    (["--target-params", "nan", "--cycles", "2"], "--target-params must be a number, got nan"),
    (["--target-params", "1e-9"], "below the smallest model the floors allow"),
    (["--target-bytes", "1B"], "below the smallest model the floors allow"),
    (["--mlp-level", "nan"], "--mlp-level must be a number, got nan"),
    (["--mlp-level", "0.95"], "--min-channels leaves only"),
    (["--max-step-params", "nan"], "--max-step-params must be a number"),
    (["--target-modules", "q_projx"], "'q_projx' names no linear layer of llama"),
    (["--target-modules", "q_proj,nope"], "'nope' names no linear layer"),
]


@pytest.mark.parametrize("args,message", FORGE_CASES)
def test_forge_refuses_before_loading(folder, tmp_path, no_loading, args, message):
    before = set(tmp_path.iterdir())
    result = CliRunner().invoke(main, ["forge", str(folder), "--out", str(tmp_path / "out"), "--steps", "1", *args])
    _fails_cleanly(result, tmp_path, before, message)


@pytest.mark.parametrize("args,message", [
    (["--prune-level", "nan"], "--prune-level must be a number"),
    (["--target-params", "1e-9"], "below the smallest model the floors allow"),
    (["--criterion", "entropy", "--mlp-level", "0.2"], "--mlp-level cuts MLP channels"),
])
def test_prune_refuses_before_loading(folder, tmp_path, no_loading, args, message):
    before = set(tmp_path.iterdir())
    result = CliRunner().invoke(main, ["prune", str(folder), "--out", str(tmp_path / "out"), *args])
    _fails_cleanly(result, tmp_path, before, message)


def test_entropy_with_the_default_target_fails_within_a_second(folder, tmp_path):
    runner = CliRunner()
    runner.invoke(main, ["forge", "--help"])  # imports warm, as for any second command of a session
    start = time.perf_counter()
    result = runner.invoke(main, ["forge", str(folder), "--out", str(tmp_path / "out"), "--criterion", "entropy"])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 1 and result.stderr.startswith("error: entropy")
    assert elapsed < 1.0, elapsed


def test_bad_combinations_fail_when_the_options_are_built():
    with pytest.raises(SentinelError, match="entropy scores attention heads only"):
        PruneOptions(criterion="entropy", target_params=0.75)
    with pytest.raises(SentinelError, match="mitosis regrows parameters"):
        PruneOptions(target_params=0.75, mitosis_rounds=1)
    with pytest.raises(SentinelError, match=r"level must be a fraction in \[0, 1\), got nan"):
        PruneOptions(level=float("nan"))
    with pytest.raises(SentinelError, match="batch_size must be at least 1"):
        PruneOptions(batch_size=0)
    assert PruneOptions(criterion="entropy", level=0.5).kinds == ("heads",)
    assert tuple(CLI_CRITERIA) == CRITERIA


def test_the_preflight_floor_is_the_search_floor():
    """Just above the floor the real search succeeds; just below, preflight and search both refuse."""
    model = tiny_model("llama")
    params = sum(p.numel() for p in model.parameters())
    with pytest.raises(SentinelError, match=r"smallest model the floors allow: ([\d,]+)") as info:
        check_reachable(model, PruneOptions(target_params=0.01))
    floor = int(info.value.args[0].split("allow: ")[1].split(" ")[0].replace(",", ""))
    above = PruneOptions(criterion="random", target_params=(floor + 1) / params, refit=False)
    check_reachable(model, above)
    report, _ = prune_model(model, [tokens(2, 8)], above, progress=False)
    assert report["params"]["after"] == floor
    below = PruneOptions(criterion="random", target_params=(floor - 1) / params, refit=False)
    with pytest.raises(SentinelError, match="below the smallest model"):
        check_reachable(tiny_model("llama"), below)
    with pytest.raises(SentinelError, match="every layer is at its floor"):
        prune_model(tiny_model("llama"), [tokens(2, 8)], below, progress=False)
