"""Bounded memory for the estimators linear in the game values: exact, kernel, leverage, kadd,
regression_mc (and auto): game values spilled to disk, solved by output column chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from msa_core import shapley_modes
from msa_core.estimators import RunCancelled, SamplingState
from msa_core.ondisk import is_on_disk

from .test_bounded_memory import LowRankLinear, dense

UNBOUNDED = "64GB"  # the in-memory path with its natural blocks: what a run without a bound computes
CASES = {  # method: (players, budget, max_memory) small enough to be quick, small enough to spill
    "exact": (10, None, "1MB"),
    "kernel": (12, 300, "4MB"),
    "leverage": (12, 300, "4MB"),
    "kadd": (7, 100, "4MB"),
    "regression_mc": (7, 100, "4MB"),
}
SHAPE = (8, 500)  # 4,000 outputs: the regressions' B (17 x p x outputs) is 30-100 MB


def _run(method, max_memory, tmp_path, **kwargs):
    n, budget, _ = CASES[method]
    game = LowRankLinear(n, SHAPE, seed=5)
    extra = {"budget": budget} if budget else {}
    return game, shapley_modes(game, n, method=method, seed=4, max_memory=max_memory, scratch_dir=tmp_path,
                               **extra, **kwargs)


@pytest.mark.parametrize("method", sorted(CASES))
def test_spilled_run_equals_the_unbounded_run_and_the_exact_values(method, tmp_path):
    game, reference = _run(method, UNBOUNDED, tmp_path)
    _, bounded = _run(method, CASES[method][2], tmp_path)
    assert reference.metadata["memory"]["mode"] == "memory"
    assert bounded.metadata["memory"]["mode"] == "spill"
    assert bounded.n_evaluations == reference.n_evaluations
    values = dense(bounded.values)
    assert torch.allclose(values, reference.values, rtol=0, atol=1e-12)
    assert torch.allclose(values, game.exact(), rtol=0, atol=1e-11)  # a linear game: every method is exact
    if reference.stderr is None:
        assert bounded.stderr is None
    else:
        assert torch.allclose(dense(bounded.stderr), reference.stderr, rtol=0, atol=1e-12)
    # the spilled values are deleted at the end; only an on-disk result's arrays remain
    on_disk = sorted(name for name in ("values", "stderr") if is_on_disk(getattr(bounded, name)))
    assert sorted(path.name for path in tmp_path.glob("msa-moments-*/*")) == on_disk


def test_an_underdetermined_spilled_fit_does_not_depend_on_the_chunking(tmp_path):
    game = LowRankLinear(30, (8, 100), seed=5)  # 58 coalitions for 58 features: every KKT system is singular
    runs = [shapley_modes(game, 30, method="kernel", budget=60, seed=4, max_memory=bound, scratch_dir=tmp_path)
            for bound in ("6MB", "12MB")]
    assert runs[0].metadata["memory"]["width"] != runs[1].metadata["memory"]["width"]
    values = [dense(run.values) for run in runs]
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-9)  # the minimum-norm fit, whole
    assert torch.allclose(values[0].sum(0), game.exact().sum(0), rtol=0, atol=1e-9)  # efficiency


def test_auto_spills_instead_of_falling_back_to_antithetic(tmp_path):
    game = LowRankLinear(12, SHAPE, seed=5)
    result = shapley_modes(game, 12, method="auto", budget=200, max_memory="4MB", scratch_dir=tmp_path)
    assert result.metadata["auto"]["chosen"] == "kernel"
    assert result.metadata["memory"]["mode"] == "spill"
    assert torch.allclose(dense(result.values), game.exact(), rtol=0, atol=1e-11)


@pytest.mark.parametrize("where", ["evaluating", "solving"])
def test_a_cancelled_spilled_run_resumes_to_the_uninterrupted_values(where, tmp_path):
    keep = lambda state: None  # noqa: E731  (checkpointing runs plan for a checkpoint's copy: same blocks)
    _, whole = _run("kernel", "4MB", tmp_path / "whole", on_block=keep)
    cancel, saved = threading.Event(), []

    def on_block(state):
        saved.append(SamplingState.from_arrays(state.to_arrays()))  # what a checkpoint file would hold
        if (where == "evaluating" and state.next_unit >= 40) or state.next_unit == 149:
            cancel.set()  # "solving": the last block is merged, the column pass is cancelled

    with pytest.raises(RunCancelled):
        _run("kernel", "4MB", tmp_path / "part", cancel=cancel, on_block=on_block)
    state = saved[-1]
    assert "spill" in state.extra and (state.next_unit < 149) == (where == "evaluating")
    resumed = _run("kernel", "4MB", tmp_path / "part", state=state, on_block=keep)[1]
    assert resumed.n_evaluations == whole.n_evaluations
    assert torch.equal(dense(resumed.values), dense(whole.values))
    assert torch.equal(dense(resumed.stderr), dense(whole.stderr))


def test_a_lost_spill_restarts_cleanly(tmp_path):
    import shutil

    _, whole = _run("kernel", "4MB", tmp_path / "whole", on_block=lambda state: None)
    saved = []

    class Stop(Exception):
        pass

    def on_block(state):
        saved.append(SamplingState.from_arrays(state.to_arrays()))
        if state.next_unit >= 60:
            raise Stop

    with pytest.raises(Stop):
        _run("kernel", "4MB", tmp_path / "part", on_block=on_block)
    shutil.rmtree(saved[-1].extra["spill"]["path"])  # e.g. a scratch folder cleaned between sessions
    resumed = _run("kernel", "4MB", tmp_path / "part", state=saved[-1], on_block=lambda state: None)[1]
    assert resumed.n_evaluations == whole.n_evaluations
    assert torch.equal(dense(resumed.values), dense(whole.values))


def test_a_bound_below_one_output_column_is_refused_in_one_line():
    game = LowRankLinear(60, (3,), seed=0)  # kadd: p = 60 * 61 / 2 + 57 features, A is 17 x p x p
    with pytest.raises(ValueError, match=r"cannot run within max_memory=8\.0 MB: .* 1887 x 1887 features") as error:
        shapley_modes(game, 60, method="kadd", budget=400, max_memory="8MB")
    assert "\n" not in str(error.value)


CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {root!r})
    from tests.test_bounded_memory import LowRankLinear
    from msa_core import shapley_modes
    def status(key):
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
    n, shape = 16, (50, 2000)  # B: 17 x 30 x 100,000 float64 = 408 MB; values + stderr 25.6 MB
    game = LowRankLinear(n, shape, seed=2)
    limit = status("VmSize") + 3 * 48 * 2**20  # an in-memory run (its B alone) cannot fit
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    baseline = status("VmRSS")
    result = shapley_modes(game, n, method="kernel", budget=120, seed=0, max_memory="48MB", scratch_dir={scratch!r})
    peak = status("VmHWM")  # not ru_maxrss: Linux keeps it across exec (the forking pytest's peak)
    error = max(float((result.values[i] - game.exact()[i]).abs().max()) for i in range(n))
    print(json.dumps({{"baseline": baseline, "peak": peak, "error": error, "plan": result.metadata["memory"],
                      "on_disk": type(result.values).__name__}}))
""")


def test_spilled_kernel_run_stays_under_the_bound_in_a_limited_process(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    completed = subprocess.run([sys.executable, "-c", CHILD.format(root=root, scratch=str(tmp_path))],
                               capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["plan"]["mode"] == "spill" and figures["on_disk"] == "ChunkedArray"
    assert figures["error"] < 1e-11
    assert figures["peak"] - figures["baseline"] < 48 * 2**20, figures
