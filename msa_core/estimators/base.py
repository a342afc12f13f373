"""Shared machinery of the estimators: the :class:`Estimator` interface, budgets and the block loop.

An estimator never loops over single coalitions: it builds a :data:`~msa_core.types.CoalitionMatrix`
for a whole block and hands it to :class:`~msa_core.estimators.runner.GameRunner` (re-exported here),
which slices it into ``batch_size`` rows per game call, checks what the game returns, counts
evaluations and reports progress.

Sampling estimators draw i.i.d. *sample units* (a permutation, an antithetic pair, a stratified
block), each seeded by ``(seed, unit_index)``. A unit's draw therefore depends neither on the batch
size nor on how units are grouped, and blocks of units can be computed anywhere (locally, after a
resume, on Ray workers) and merged in unit order with identical results.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..accumulate import DiskMoments, MomentAccumulator
from ..result import ShapleyResult
from .runner import (  # noqa: F401 - GameRunner and its names stay importable from here
    DEFAULT_BATCH_SIZE,
    MAX_ELEMENTS_PER_CALL,
    GameRunner,
    ProgressCallback,
    RunCancelled,
)
from .state import SamplingState, flatten_state, unflatten_state

__all__ = [
    "GameRunner",
    "Estimator",
    "SamplingEstimator",
    "SamplingState",
    "RunCancelled",
    "ProgressCallback",
    "budget_from_permutations",
    "resolve_budget",
    "flatten_state",
    "unflatten_state",
    "MAX_ELEMENTS_PER_CALL",
    "begin_run",
]


class Estimator(ABC):
    """One Shapley estimator. Subclasses implement :meth:`plan` and :meth:`estimate`; users call
    ``shapley_modes``.

    The budget of every method is stated in **game evaluations**, the two endpoints ``v(empty)`` and
    ``v(N)`` included. :meth:`plan` is the one place that turns a budget into sample units and the
    evaluations the run will spend (at most the budget; an upper bound for adaptive methods).
    """

    name: str = "estimator"
    adaptive: bool = False
    """True where a run may stop early: then the plan's evaluations are an upper bound."""

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        """``{"n_units": int, "evaluations": int}`` that ``budget`` evaluations buy (no game calls).

        The default: sample units of :meth:`evaluations_per_unit` evaluations each after the two
        endpoints. ``evaluations <= budget``, except that a run always buys :attr:`min_units`
        units: a budget below that is raised to it (and the plan says so).
        """
        per_unit = self.evaluations_per_unit(n_players)
        if per_unit == 0:  # one player and a chain method: the endpoints are the whole game
            return {"n_units": 1, "evaluations": 2}
        units = max(self.min_units, (int(budget) - 2) // per_unit)
        return {"n_units": int(units), "evaluations": int(2 + units * per_unit)}

    min_units: int = 1
    """Sample units every run buys, whatever the budget (a standard error needs two)."""

    def evaluations_per_unit(self, n_players: int) -> int:
        """Game evaluations one sample unit costs (besides the two shared endpoints)."""
        return max(0, n_players - 1)

    def n_units(self, n_players: int, n_permutations: int) -> int:
        """Sample units for a budget stated in permutations (compatibility; see :meth:`plan`)."""
        return self.plan(n_players, budget_from_permutations(n_players, n_permutations))["n_units"]

    @abstractmethod
    def estimate(
        self,
        runner: GameRunner,
        n_players: int,
        *,
        budget: int,
        seed: int = 0,
        state: "SamplingState | None" = None,
        on_block: Callable[["SamplingState"], Any] | None = None,
    ) -> ShapleyResult:
        """Estimate the Shapley modes of the game behind ``runner`` within ``budget`` evaluations,
        resuming from ``state`` if given and calling ``on_block(state)`` after every merged block."""


def budget_from_permutations(n_players: int, n_permutations: int) -> int:
    """The evaluations ``n_permutations`` join orders cost: ``2 + n_permutations * (n_players - 1)``."""
    return 2 + int(n_permutations) * max(0, int(n_players) - 1)


DEFAULT_PERMUTATIONS = 1000
"""Without ``budget`` or ``n_permutations``, a run gets what this many join orders would cost."""


def resolve_budget(n_players: int, budget: int | None, n_permutations: int | None) -> int:
    """The budget in evaluations from either ``budget`` or ``n_permutations`` (never both)."""
    if budget is not None and n_permutations is not None:
        raise ValueError("give either budget= (game evaluations) or n_permutations=, not both")
    if budget is not None:
        if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 2:
            raise ValueError(f"budget must be an integer number of game evaluations >= 2; got {budget!r}")
        return int(budget)
    n_permutations = DEFAULT_PERMUTATIONS if n_permutations is None else n_permutations
    if not isinstance(n_permutations, (int, np.integer)) or isinstance(n_permutations, bool) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}")
    return budget_from_permutations(n_players, int(n_permutations))


def begin_run(
    runner: GameRunner, state: SamplingState | None, planned_evaluations: int
) -> tuple[SamplingState, torch.Tensor, torch.Tensor]:
    """Start or resume a run: ``(state, empty, intact)`` with the endpoints evaluated once.

    Sets the runner's evaluation count from the state (a resumed run counts on from its checkpoint)
    and its planned total (for progress); the endpoints come back float64 on the runner's device.
    """
    state = state if state is not None else SamplingState()
    runner.n_evaluations = state.n_evaluations
    runner.total = int(planned_evaluations)
    if state.empty is None or state.intact is None:
        state.empty, state.intact = runner.endpoints()
        state.n_evaluations = runner.n_evaluations
    empty = state.empty.to(runner.device, torch.float64)
    intact = state.intact.to(runner.device, torch.float64)
    runner.output_shape = tuple(empty.shape)
    return state, empty, intact


class SamplingEstimator(Estimator):
    """Base of unbiased sampling estimators whose estimate is a mean of i.i.d. sample units.

    A subclass says how many units a budget buys (:meth:`plan`), how many evaluations a unit costs
    (:meth:`evaluations_per_unit`) and computes the samples of a range of units
    (:meth:`unit_samples`): a tensor ``(k, n_players, *output_shape)`` whose mean over ``k`` is an
    unbiased estimate of the Shapley modes. Where single samples do not sum over players to
    ``v(N) - v(empty)``, :meth:`result_from_state` must restore efficiency (see the Owen estimator).
    """

    @abstractmethod
    def unit_samples(
        self,
        runner: GameRunner,
        n_players: int,
        seed: int,
        units: range,
        empty: torch.Tensor,
        intact: torch.Tensor,
    ) -> torch.Tensor:
        """Samples ``(len(units), n_players, *output_shape)`` float64 for the given unit indices."""

    streams: bool = False
    """True where :meth:`stream_unit` is implemented (the run then fits any ``max_memory``)."""

    def stream_unit(
        self,
        runner: GameRunner,
        n_players: int,
        seed: int,
        unit: int,
        empty: torch.Tensor,
        intact: torch.Tensor,
        chunk: int,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The samples of unit ``unit`` a chunk of players at a time: yields ``(players, samples)``.

        ``players`` int64 ``(p,)`` with ``p <= chunk`` and ``samples`` ``(p, *output_shape)`` float64:
        rows ``players`` of ``unit_samples(..., range(unit, unit + 1), ...)[0]`` (equal to float
        rounding, from the same evaluations); every player comes exactly once. Memory is that of
        ``chunk`` players' coalitions, never ``(n_players, *output_shape)``. Used by
        :func:`msa_core.bounded.stream_estimate` where :attr:`streams` is True.
        """
        raise NotImplementedError(f"method {self.name!r} cannot stream a sample unit")

    def finish_on_disk(self, mean: Any, stderr: Any, state: SamplingState, *, max_bytes: int) -> None:
        """Turn on-disk moments into the result in place: ``mean`` and ``stderr`` are
        :class:`~msa_core.ondisk.ChunkedArray` ``(n_players, *output_shape)``, read and written at most
        ``max_bytes`` at a time. The on-disk counterpart of :meth:`result_from_state` (default: as is)."""

    def units_per_block(self, n_players: int, output_size: int) -> int:
        """Units merged per block: bounds memory; a function of the game's size only, for determinism."""
        per_unit = max(1, self.evaluations_per_unit(n_players) * max(1, output_size))
        return int(max(1, min(256, 2**24 // per_unit)))

    def estimate(
        self,
        runner: GameRunner,
        n_players: int,
        *,
        budget: int,
        seed: int = 0,
        state: SamplingState | None = None,
        on_block: Callable[[SamplingState], Any] | None = None,
        max_memory: int | None = None,
        scratch_dir: Any = None,
    ) -> ShapleyResult:
        """Run (or resume) the sampling loop and return the result.

        Args:
            runner: the batched game runner.
            n_players: number of players.
            budget: game evaluations, endpoints included (see :meth:`plan`).
            seed: non-negative integer seed; unit ``u`` is drawn from ``(seed, u)``.
            state: a :class:`SamplingState` to resume from (e.g. loaded from a checkpoint).
            on_block: called with the state after every merged block (checkpointing).
            max_memory: bound in bytes on the loop's working arrays (None: unbounded block sizes);
                estimators with :attr:`streams` meet any bound (:func:`msa_core.bounded.memory_plan`).
            scratch_dir: where on-disk accumulators go when they do not fit (default: temp dir).
        """
        started = time.perf_counter()
        total_units = self.plan(n_players, budget)["n_units"]
        state, empty, intact = begin_run(runner, state, 2 + total_units * self.evaluations_per_unit(n_players))
        block = self.units_per_block(n_players, math.prod(empty.shape))
        memory = None
        if max_memory is not None or isinstance(state.accumulator, DiskMoments):
            from ..bounded import memory_plan, stream_estimate

            memory = memory_plan(self, n_players, math.prod(empty.shape), int(max_memory or 2**62),
                                 checkpoints=on_block is not None, natural_block=block)
            block = memory.block
            if memory.mode == "stream" or isinstance(state.accumulator, DiskMoments):
                stream_estimate(self, runner, n_players, seed=seed, total_units=total_units, state=state,
                                empty=empty, intact=intact, plan=memory, scratch_dir=scratch_dir, on_block=on_block)
        while state.next_unit < total_units:
            runner.check_cancel()
            units = range(state.next_unit, min(total_units, state.next_unit + block))
            samples = self.unit_samples(runner, n_players, seed, units, empty, intact)
            state.accumulator.merge(MomentAccumulator.from_samples(samples))
            state.next_unit = units.stop
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
        if isinstance(state.accumulator, DiskMoments):
            from ..bounded import disk_result

            result = disk_result(self, state, seed=seed, elapsed_s=time.perf_counter() - started,
                                 max_bytes=memory.chunk_bytes if memory else 2**26)
        else:
            result = self.result_from_state(state, seed=seed, elapsed_s=time.perf_counter() - started)
        if memory is not None:
            result.metadata["memory"] = memory.describe()
        return result

    def result_from_state(self, state: SamplingState, *, seed: int, elapsed_s: float) -> ShapleyResult:
        """Turn a finished state into a :class:`ShapleyResult`."""
        acc = state.accumulator
        if acc.count == 0:
            raise ValueError("no samples were drawn: the budget must buy at least one sample unit")
        return state.to_result(acc.mean.clone(), acc.stderr(), method=self.name, seed=seed, elapsed_s=elapsed_s,
                               n_samples=acc.count)
