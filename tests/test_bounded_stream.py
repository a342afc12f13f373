"""Owen and truncated sampling streamed under a bound (issue 13): chunk by chunk, on disk when needed."""

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

from .test_bounded_memory import LowRankLinear, dense

N, SHAPE = 30, (20, 250)  # one mode: 1.2 MB float64


@pytest.mark.parametrize("method, options, max_memory, on_disk", [
    ("owen", {}, "4MB", True),
    ("owen", {"n_strata": 4}, "24MB", False),  # blocks need ~25 MB, the stream ~11 MB
    ("truncated", {"tolerance": 0.3, "chunk": 5}, "2MB", True),  # 3 positions a step inside stretches of 5
    ("truncated", {"tolerance": 0.3}, "14MB", False),
    ("truncated", {"tolerance": 5.0}, "2MB", True),  # the intact model is at the floor: no walk at all
])
def test_streamed_owen_and_truncated_equal_the_unbounded_run(method, options, max_memory, on_disk, tmp_path):
    game = LowRankLinear(N, SHAPE)
    kwargs = dict(method=method, n_permutations=6, seed=3, estimator_options=options)
    reference = shapley_modes(game, N, **kwargs)
    bounded = shapley_modes(game, N, max_memory=max_memory, scratch_dir=tmp_path, **kwargs)
    assert bounded.metadata["memory"]["mode"] == "stream"
    assert bounded.metadata["memory"]["on_disk"] is on_disk and bounded.on_disk is on_disk
    assert bounded.n_evaluations == reference.n_evaluations
    assert bounded.metadata.get("truncation") == reference.metadata.get("truncation")
    assert torch.allclose(dense(bounded.values), reference.values, rtol=0, atol=1e-12)
    assert torch.allclose(dense(bounded.stderr), reference.stderr, rtol=0, atol=1e-12)
    if method == "owen":  # every Owen sample of a linear game is exact
        assert torch.allclose(dense(bounded.values), game.exact(), rtol=0, atol=1e-12)


def test_streamed_truncation_without_tolerance_is_exact_on_a_linear_game(tmp_path):
    game = LowRankLinear(N, SHAPE, seed=5)
    result = shapley_modes(game, N, method="truncated", n_permutations=3, seed=1, max_memory="2MB",
                           scratch_dir=tmp_path, estimator_options={"tolerance": 0.0})
    assert result.on_disk and result.n_evaluations == 2 + 3 * (N - 1)
    assert torch.allclose(dense(result.values), game.exact(), rtol=0, atol=1e-12)


def test_a_cut_chain_gives_the_intact_value_to_the_first_lesioned_player():
    game = LowRankLinear(N, SHAPE, seed=6)
    result = shapley_modes(game, N, method="truncated", n_permutations=2, seed=0, max_memory="2MB",
                           estimator_options={"tolerance": 5.0})
    assert result.n_evaluations == 2  # both endpoints: nothing walked
    values = dense(result.values)
    total = game.exact().sum(0)
    assert int((values.reshape(N, -1).abs().sum(1) > 0).sum()) <= 2  # the last player of each order
    assert torch.allclose(values.sum(0), total, rtol=0, atol=1e-12)  # efficiency holds


# checkpoint and resume of streamed owen and truncated runs: test_on_disk_checkpoint_resumes_to_the_
# uninterrupted_values in test_bounded_memory.py (one test for permutation, owen and truncated)


class CancelAfter(LowRankLinear):
    """Sets ``cancel`` on its ``calls``-th call (inside a streamed unit)."""

    def __init__(self, *args, calls: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cancel, self.calls, self.remaining = threading.Event(), calls, calls

    def __call__(self, coalitions):
        self.remaining -= 1
        if self.remaining == 0:
            self.cancel.set()
        return super().__call__(coalitions)


@pytest.mark.parametrize("method", ["owen", "truncated"])
def test_cancel_waits_for_the_unit_and_the_state_resumes(method, tmp_path):
    options = {"n_strata": 4} if method == "owen" else {"tolerance": 0.0}
    kwargs = dict(method=method, budget=2 + 3 * 4 * 21, seed=2, max_memory="2MB", batch_size=8,
                  estimator_options=options)
    whole = shapley_modes(LowRankLinear(20, (10, 400), seed=3), 20, scratch_dir=tmp_path / "w", **kwargs)
    game = CancelAfter(20, (10, 400), seed=3, calls=5)  # the endpoints, then a few calls into unit 0
    state = SamplingState()
    with pytest.raises(RunCancelled):
        shapley_modes(game, 20, cancel=game.cancel, state=state, scratch_dir=tmp_path / "c", **kwargs)
    assert state.next_unit == 1 and state.accumulator.count == 1  # unit 0 was merged whole
    game.cancel.clear()
    resumed = shapley_modes(game, 20, state=state, **kwargs)
    assert torch.equal(dense(resumed.values), dense(whole.values))


def test_a_crash_inside_a_streamed_unit_leaves_no_resumable_checkpoint(tmp_path):
    class Crash(LowRankLinear):
        calls = 0

        def __call__(self, coalitions):
            Crash.calls += 1
            if Crash.calls == 40:
                raise RuntimeError("the game failed")
            return super().__call__(coalitions)

    saved = []
    with pytest.raises(RuntimeError, match="the game failed"):
        shapley_modes(Crash(20, (10, 400)), 20, method="owen", budget=2 + 4 * 4 * 21, seed=0, max_memory="2MB",
                      batch_size=8, estimator_options={"n_strata": 4}, scratch_dir=tmp_path,
                      on_block=lambda state: saved.append(state.to_arrays()))
    assert saved  # a whole unit was checkpointed before the crash ...
    with pytest.raises(ValueError, match="cannot be resumed"):  # ... but its folder has since changed
        SamplingState.from_arrays(saved[-1])


CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {root!r})
    from tests.test_bounded_memory import LowRankLinear
    from msa_core import shapley_modes
    def status(key):
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
    n, shape = 120, (50, 1000)  # values + stderr: 2 * 120 * 50000 * 8 B = 96 MB
    game = LowRankLinear(n, shape, seed=2)
    limit = status("VmSize") + 80 * 2**20  # less address space than the result needs
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # warm-up: torch's and BLAS's first-call buffers and lazy imports belong to the baseline, not the run
    shapley_modes(LowRankLinear(4, (3,)), 4, method={method!r}, budget=100, max_memory="2MB", scratch_dir={scratch!r})
    baseline = status("VmRSS")
    result = shapley_modes(game, n, method={method!r}, budget={budget}, seed=0, max_memory="30MB",
                           estimator_options={options!r}, scratch_dir={scratch!r})
    peak = status("VmHWM")  # this process's own peak (ru_maxrss carries the forking pytest's across exec)
    error = max(float((result.values[s:s + 20] - (game.a[s:s + 20] @ game.b.reshape(3, -1)).reshape(-1, *shape))
                      .abs().max()) for s in range(0, n, 20))
    print(json.dumps({{"baseline": baseline, "peak": peak, "error": error, "plan": result.metadata["memory"],
                      "samples": result.metadata.get("topk", {{}}).get("samples_per_unit"),
                      "evaluations": result.n_evaluations}}))
""")


def bounded_run_in_a_limited_process(tmp_path, method: str, budget: int, options: dict) -> dict:
    """Run ``method`` on a 120-player linear game with outputs (50, 1000) (a 96 MB result) under
    ``max_memory="30MB"`` in a child whose address space is its baseline + 80 MB. Returns the child's
    figures: RSS ``baseline`` and ``peak`` (VmHWM) in bytes, max ``error`` against the exact values, the
    memory ``plan``, topk's ``samples`` per unit (else None) and the ``evaluations``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # a low fixed mmap threshold: freed rows (400 KB) go back to the system, so RSS tracks use
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}
    script = CHILD.format(root=root, scratch=str(tmp_path), method=method, budget=int(budget), options=options)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_streamed_owen_stays_under_the_bound_in_a_limited_process(tmp_path):
    figures = bounded_run_in_a_limited_process(tmp_path, "owen", 2 + 2 * 4 * 121, {"n_strata": 4})
    assert figures["plan"]["mode"] == "stream" and figures["plan"]["on_disk"]
    assert figures["error"] < 1e-10
    assert figures["peak"] - figures["baseline"] < 30 * 2**20, figures
