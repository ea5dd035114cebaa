"""The pruning wing's choices and weights are byte-identical to the code it was refactored from.

tests/fixtures/pruning_baseline.json was written by the pre-refactor modules (forge_cuda/selection.py,
units.py, prune.py, pruning_step.py) from the cases below; the refactored package must reproduce
every choice exactly (layouts, counts, moves: hashed). Weights and the reports' floats come from
BLAS/LAPACK, whose rounding depends on the CPU (the same code gave other sha256s on an AVX-512
EPYC than on the machine the first fixture was written on), so those parts are stored as values:
integers and strings must match exactly, floats within ``RTOL`` (weights as per-tensor shape, sum
and sum of squares). Regenerate only on a deliberate behaviour change:
``python tests/test_pruning_baseline.py --write [--parts pipeline,step,cli]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny import forge_tiny, tiny_model, tokens  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "pruning_baseline.json"


def _api():
    from forge_cuda.pruning import search, space, step
    from forge_cuda.pruning.defrag import model_layout
    from forge_cuda.pruning.importance import UnitScores
    from forge_cuda.pruning.options import PruneOptions

    def prune_model(model, batches, options):
        return step.prune_model(model, batches, options, progress=False)

    def prune_once(model, calib, head_level, options, cycle_progress, base):
        return step.prune_once(model, calib, head_level, options, progress=False, cycle_progress=cycle_progress,
                               base=base)

    return dict(select_heads=search.select_heads, selector=search.greedy_search, unit_costs=space.unit_costs,
                channel_group_for=space.channel_group_for, model_layout=model_layout, UnitScores=UnitScores,
                Options=PruneOptions, prune_model=prune_model, prune_once=prune_once, settings=PruneOptions)


RTOL, ATOL = 1e-4, 1e-6  # float parts: far above BLAS rounding across CPUs, far below any behaviour change


def _digest(tensors: dict) -> dict:
    """Per tensor: shape, sum and sum of squares (float64): what a CPU's BLAS cannot change beyond RTOL."""
    out = {}
    for name, t in sorted(tensors.items()):
        x = t.detach().cpu().double()
        out[name] = [list(x.shape), float(x.sum()), float((x * x).sum())]
    return out


def assert_close(got, want, where: str = "") -> None:
    """Exact for everything but floats; floats within RTOL/ATOL."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)), f"{where}: {got!r} is not a number"
        if math.isnan(want):  # a score of a removed unit
            assert math.isnan(got), f"{where}: {got} != nan"
        else:
            assert abs(got - want) <= ATOL + RTOL * abs(want), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys differ"
        for k in want:
            assert_close(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _random_scores(api, layout, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "heads":
        layers = {i: rng.random(l.num_heads) for i, l in enumerate(layout.layers)}
    else:
        layers = {i: rng.random(len(layout.channels(i))) for i in range(len(layout.layers))}
    return api["UnitScores"]("test", layout, layers, 0, kind)


def _strip(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in ("seconds", "cuda_memory_allocated", "options")}
    return json.loads(json.dumps(out))


def exact_cases(api) -> dict:
    out = {}
    for pruned in (False, True):
        model = tiny_model("llama")
        if pruned:
            forge_tiny(model)
        layout = api["model_layout"](model)
        for seed in (0, 1):
            s = _random_scores(api, layout, "heads", seed)
            for mode in ("query", "group", "auto"):
                for scope in ("global", "layer"):
                    for level in (0.25, 0.5):
                        try:
                            sel = api["select_heads"](s, level, mode=mode, min_heads=2, scope=scope)
                            value = [sel.layout.to_dict(), sel.removed, sel.requested, sel.total]
                        except Exception as e:  # noqa: BLE001 - the error message is part of the behaviour
                            value = f"{type(e).__name__}: {e}"
                        out[f"{pruned}-{seed}-{mode}-{scope}-{level}"] = value
    return out


def greedy_cases(api) -> dict:
    out = {}
    for family in ("llama", "gpt2", "qwen3_5_text"):
        model = tiny_model(family)
        if family == "llama":
            forge_tiny(model)
        layout, costs = api["model_layout"](model), api["unit_costs"](model)
        params = sum(p.numel() for p in model.parameters())
        group = api["channel_group_for"](layout, 64)
        for seed in (0, 1):
            heads = _random_scores(api, layout, "heads", seed)
            heads.layers = {i: v for i, v in heads.layers.items() if i in costs and costs[i].per_q}
            channels = _random_scores(api, layout, "channels", seed + 10)
            for balance in ("layer", "kind", "none"):
                for mode in ("auto", "query", "group"):
                    for frac in (0.05, 0.2, 0.45):
                        key = f"{family}-{seed}-{balance}-{mode}-{frac}"
                        try:
                            sel = api["selector"](layout, costs, heads, channels, mode=mode, min_heads=1,
                                                  min_channels=10, channel_group=group, balance=balance
                                                  ).select(round(frac * params))
                            out[key] = [sel.layout.to_dict(), sel.requested, sel.removed, sel.moves, sel.units]
                        except Exception as e:  # noqa: BLE001
                            out[key] = f"{type(e).__name__}: {e}"
                sel = api["selector"](layout, costs, None, channels, mode="auto", min_channels=10,
                                      channel_group=group, balance=balance).select_count("channels", 50)
                out[f"{family}-{seed}-{balance}-count"] = [sel.layout.to_dict(), sel.removed, sel.moves, sel.units]
    return out


PIPELINE = [
    ("llama", dict(criterion="taylor", target_params=0.7, normalize="none", refit=True)),
    ("llama", dict(criterion="activation", level=0.4, mlp_level=0.3, refit=True)),
    ("qwen2", dict(criterion="taylor", level=0.5, mode="group", refit=False)),
    ("gpt2", dict(criterion="taylor", target_params=0.8, normalize="none", refit=True)),
    ("qwen3_5_text", dict(criterion="activation", target_params=0.75, normalize="none", refit=True)),
    ("qwen3", dict(criterion="magnitude", level=0.25, scope="layer", mlp_level=0.2, refit=False)),
]


def pipeline_cases(api) -> dict:
    out = {}
    for n, (family, kw) in enumerate(PIPELINE):
        model = tiny_model(family)
        batches = list(tokens(4, 16, seed=3).split(2))
        report, _ = api["prune_model"](model, batches, api["Options"](**kw))
        out[f"{n}-{family}"] = [_digest(model.state_dict()), _strip(report)]
    return out


STEPS = [
    (0.0, dict(criterion="taylor", target_params=0.7), (0.5, 1.0)),
    (0.5, dict(criterion="taylor", mitosis_rounds=1, mlp_level=0.2), (0.5, 1.0)),
    (0.5, dict(criterion="activation", refit=False, balance="kind"), (1.0,)),
]


def step_cases(api) -> dict:
    out = {}
    for n, (level, kw, progress) in enumerate(STEPS):
        model = tiny_model("llama")
        base = {"params": sum(p.numel() for p in model.parameters()), "channels": 3 * 96}
        calib = tokens(4, 16, seed=5)
        for p in progress:
            report = api["prune_once"](model, calib, level, api["settings"](**kw), p, base)
            report = {k: v for k, v in report.items() if k not in ("seconds", "cuda_memory_allocated", "options")}
            out[f"{n}-{p}"] = [_digest(model.state_dict()), json.loads(json.dumps(report))]
    return out


CLI = [["--target-params", "0.75"], ["--prune-level", "0.33"], ["--target-params", "0.6", "--mode", "query"]]


def cli_cases(tmp: Path) -> dict:
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from sentinel.cli import main
    from tiny_tokenizer import save_tiny_checkpoint

    source = save_tiny_checkpoint(tiny_model("llama", vocab_size=320), tmp / "src")
    out = {}
    for n, args in enumerate(CLI):
        dest = tmp / f"out{n}"
        result = CliRunner().invoke(main, ["prune", str(source), "--out", str(dest), "--calib-windows", "4",
                                           "--seq-len", "32", "--batch-size", "2", *args])
        assert result.exit_code == 0, result.output
        out[" ".join(args)] = _digest(load_file(dest / "model.safetensors"))
    return out


def _hashed(cases: dict) -> dict:
    """sha256 of each case's JSON (the full values are large; a mismatch names the case)."""
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest() for k, v in cases.items()}


HASHED = {"exact": exact_cases, "greedy": greedy_cases}  # integer choices: sha256 of their JSON
VALUED = {"pipeline": pipeline_cases, "step": step_cases}  # weights and floats: compared within RTOL


def compute(api, tmp: Path, parts) -> dict:
    run = {**{k: (lambda f=f: _hashed(f(api))) for k, f in HASHED.items()},
           **{k: (lambda f=f: json.loads(json.dumps(f(api)))) for k, f in VALUED.items()},
           "cli": lambda: cli_cases(tmp)}
    return {k: run[k]() for k in parts}


@pytest.fixture(scope="module")
def expected():
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("part", ["exact", "greedy", "pipeline", "step"])
def test_choices_and_weights_match_the_pre_refactor_code(part, expected):
    if part in HASHED:
        got, want = _hashed(json.loads(json.dumps(HASHED[part](_api())))), expected[part]
        assert sorted(got) == sorted(want)
        for key in want:
            assert got[key] == want[key], key
    else:
        assert_close(json.loads(json.dumps(VALUED[part](_api()))), expected[part], part)


def test_sentinel_prune_writes_the_same_safetensors(expected, tmp_path):
    assert_close(cli_cases(tmp_path), expected["cli"], "cli")


def test_the_float_comparison_can_fail():
    assert_close({"a": [1, 2.0]}, {"a": [1, 2.0 * (1 + RTOL / 2)]})
    assert_close([float("nan")], [float("nan")])
    for got in ({"a": [1, 2.001]}, {"a": [2, 2.0]}, {"b": [1, 2.0]}, {"a": [1]}, {"a": [1, float("nan")]}):
        with pytest.raises(AssertionError):
            assert_close(got, {"a": [1, 2.0]})


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    parts = sys.argv[sys.argv.index("--parts") + 1].split(",") if "--parts" in sys.argv else \
        [*HASHED, *VALUED, "cli"]
    old = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        result = {**old, **compute(_api(), Path(tmp), parts)}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}: " + ", ".join(f"{k} {len(v)}" for k, v in result.items()))
