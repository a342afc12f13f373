"""topk (the Neuron Shapley bandit) under max_memory (issue 13): per-unit counts, rounds in chunks, on disk."""

from __future__ import annotations

import threading

import pytest
import torch

from msa_core import shapley_modes
from msa_core.accumulate import DiskMoments, MomentAccumulator
from msa_core.estimators import RunCancelled, SamplingState

from .test_bounded_memory import LowRankLinear, dense
from .test_bounded_stream import bounded_run_in_a_limited_process

N, SHAPE = 16, (10, 200)  # one mode: 256 KB float64


@pytest.fixture(autouse=True)
def one_thread():
    """Many small tensor operations: on a loaded 2-core machine two threads spin-wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interacting(LowRankLinear):
    """A low-rank linear game plus pair and triple synergies along a fixed output pattern: marginals
    vary with the join order, so the bandit resolves units after different numbers of samples."""

    def __init__(self, n: int, shape: tuple[int, ...], seed: int = 0) -> None:
        super().__init__(n, shape, seed=seed)
        # three clear leaders, two close runners-up, the rest far below: resolved at different times
        self.a[:, 0] = torch.cat([torch.tensor([12.0, 11.0, 10.0, 7.5, 7.0]), torch.linspace(0.5, 0, n - 5)])
        self.b[0] += 1.0
        self.pattern = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) + 1

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        s = coalitions.to(torch.float64)
        synergy = 3 * s[:, 0] * s[:, 1] - 2 * s[:, 2] * s[:, 5] * s[:, 7] + 1.5 * s[:, 3] * s[:, 9]
        return super().__call__(coalitions) + synergy.view(-1, 1, 1) * self.pattern


KWARGS = dict(method="topk", budget=3000, seed=3, estimator_options={"k": 3, "permutations_per_round": 8})


@pytest.mark.parametrize("n, budget, max_memory, mode, on_disk", [
    (N, 3000, "1MB", "stream", True),  # 4 positions or units a step, moments on disk
    (N, 3000, "4MB", "blocks", False),  # 2 of a round's 8 join orders per game call
    (40, 8000, "6MB", "stream", False),  # one join order at a time, 25 positions or units a step, moments in memory
])
def test_bounded_topk_equals_the_unbounded_run(n, budget, max_memory, mode, on_disk, tmp_path):
    game = Interacting(n, SHAPE)
    kwargs = dict(KWARGS, budget=budget)
    reference = shapley_modes(game, n, **kwargs)
    info = reference.metadata["topk"]
    # resolved units stop early: later rounds evaluate pairs for the others only
    assert min(info["samples_per_unit"]) < max(info["samples_per_unit"])
    assert reference.n_evaluations < 2 + info["permutations"] * (n - 1)
    bounded = shapley_modes(game, n, max_memory=max_memory, scratch_dir=tmp_path, **kwargs)
    plan = bounded.metadata["memory"]
    assert (plan["mode"], plan["on_disk"], bounded.on_disk) == (mode, on_disk, on_disk)
    assert plan["estimate_bytes"] <= plan["max_memory"]
    assert bounded.metadata["topk"] == info  # the same stopping decisions, samples and bounds
    assert bounded.n_evaluations == reference.n_evaluations and bounded.n_samples == reference.n_samples
    assert torch.equal(dense(bounded.values), reference.values)
    assert torch.equal(dense(bounded.stderr), reference.stderr)


def test_per_row_counts_are_the_arithmetic_of_one_count_per_row(tmp_path):
    samples = torch.randn(5, 4, 3, dtype=torch.float64)
    shape = (4, 3)
    rows_of = [[0, 1, 2, 3], [1, 3], [3], [0, 1, 2, 3], [2, 3]]  # which rows sample s reaches
    memory = MomentAccumulator.with_row_counts(shape)
    disk = DiskMoments.create(tmp_path / "m", shape, chunk_bytes=24, row_counts=True)
    for s, rows in enumerate(rows_of):
        for acc in (memory, disk):
            acc.update_rows(torch.tensor(rows), samples[s, rows], shape)
            acc.finish_sample()
    assert memory.counts.tolist() == disk.counts.tolist() == [2, 3, 3, 5]
    reopened = DiskMoments.open(tmp_path / "m", 5)
    assert reopened.counts.tolist() == [2, 3, 3, 5]
    for row in range(4):
        own = samples[[s for s, rows in enumerate(rows_of) if row in rows], row]
        single = MomentAccumulator()  # one count: the same samples merged one by one
        for sample in own:
            single.update_rows(torch.tensor([0]), sample.unsqueeze(0), (1, 3))
            single.finish_sample()
        assert torch.equal(memory.mean[row], single.mean[0]) and torch.equal(memory.m2[row], single.m2[0])
        assert torch.allclose(memory.mean[row], own.mean(0), rtol=0, atol=1e-14)
        assert torch.allclose(memory.stderr()[row], own.std(0) / len(own) ** 0.5, rtol=0, atol=1e-14)
    assert torch.equal(reopened.mean.to_tensor(), memory.mean)
    assert torch.equal(torch.from_numpy(reopened.finalize_stderr(2**20).numpy()), memory.stderr())


class Stop(Exception):
    pass


@pytest.mark.parametrize("max_memory, on_disk", [("1MB", True), ("4MB", False)])  # one join order a step, or 2
def test_a_bounded_checkpoint_resumes_to_the_uninterrupted_values(max_memory, on_disk, tmp_path):
    game = Interacting(N, SHAPE, seed=1)
    kwargs = dict(KWARGS, max_memory=max_memory)
    whole = shapley_modes(game, N, scratch_dir=tmp_path / "whole", **kwargs)
    saved = []

    def on_block(state):
        saved.append(state.to_arrays())
        # a checkpoint after each step: stop inside a round of pairs (past the rounds of whole chains)
        if state.extra["count"].min() < state.extra["count"].max() and state.extra.get("round", {}).get("done") == 2:
            raise Stop

    with pytest.raises(Stop):
        shapley_modes(game, N, scratch_dir=tmp_path / "part", on_block=on_block, **kwargs)
    assert ("accumulator/path" in saved[-1]) is on_disk and ("accumulator/mean" in saved[-1]) is not on_disk
    assert saved[-1]["extra/round/done"] == 2 and saved[-1]["extra/round/m"] == 8  # 2 of the round's 8 merged
    resumed = shapley_modes(game, N, state=SamplingState.from_arrays(saved[-1]), **kwargs)
    assert resumed.metadata["topk"] == whole.metadata["topk"] and resumed.n_evaluations == whole.n_evaluations
    assert torch.equal(dense(resumed.values), dense(whole.values))
    assert torch.equal(dense(resumed.stderr), dense(whole.stderr))


class CancelAfter(Interacting):
    """Sets ``cancel`` on its ``calls``-th call."""

    def __init__(self, *args, calls: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cancel, self.remaining = threading.Event(), calls

    def __call__(self, coalitions):
        self.remaining -= 1
        if self.remaining == 0:
            self.cancel.set()
        return super().__call__(coalitions)


@pytest.mark.parametrize("max_memory, merged", [("1MB", 1), (None, 0)])
def test_cancel_waits_for_a_streamed_join_order_and_the_state_resumes(max_memory, merged, tmp_path):
    kwargs = dict(KWARGS, max_memory=max_memory, batch_size=16)
    whole = shapley_modes(Interacting(N, SHAPE, seed=2), N, scratch_dir=tmp_path / "w", **kwargs)
    game = CancelAfter(N, SHAPE, seed=2, calls=3)  # the endpoints, then inside round 0
    state = SamplingState()
    with pytest.raises(RunCancelled):
        shapley_modes(game, N, cancel=game.cancel, state=state, scratch_dir=tmp_path / "c", **kwargs)
    # streamed: the cancel waited for round 0's first join order; in memory: it stopped the round's one
    # game call before anything was merged
    assert state.extra["rounds"] == 0 and state.next_unit == 0
    assert state.extra.get("round", {}).get("done", 0) == merged
    assert state.accumulator.counts.tolist() == [merged] * N
    game.cancel.clear()
    resumed = shapley_modes(game, N, state=state, **kwargs)
    assert resumed.metadata["topk"] == whole.metadata["topk"]
    assert torch.equal(dense(resumed.values), dense(whole.values))


def test_a_crash_inside_a_streamed_round_leaves_no_resumable_checkpoint(tmp_path):
    class Crash(Interacting):
        calls = 0

        def __call__(self, coalitions):
            Crash.calls += 1
            if Crash.calls == 60:
                raise RuntimeError("the game failed")
            return super().__call__(coalitions)

    saved, state = [], SamplingState()
    with pytest.raises(RuntimeError, match="the game failed"):
        shapley_modes(Crash(N, SHAPE), N, max_memory="1MB", scratch_dir=tmp_path, state=state,
                      on_block=lambda s: saved.append(s.to_arrays()), **KWARGS)
    assert saved and state.next_unit == 0 and not state.extra  # the half-merged round was dropped
    with pytest.raises(ValueError, match="cannot be resumed"):
        SamplingState.from_arrays(saved[-1])


def test_bounded_topk_stays_under_the_bound_in_a_limited_process(tmp_path):
    figures = bounded_run_in_a_limited_process(tmp_path, "topk", 2 + 4 * 119, {"permutations_per_round": 2})
    assert figures["plan"]["mode"] == "stream" and figures["plan"]["on_disk"]
    assert figures["samples"] == [4] * 120 and figures["evaluations"] == 2 + 4 * 119  # two rounds of chains
    assert figures["error"] < 1e-10  # every marginal of a linear game is its exact value
    assert figures["peak"] - figures["baseline"] < 30 * 2**20, figures
