"""Shared machinery of the estimators: a checked, batched, counted game runner and the block loop.

An estimator never loops over single coalitions: it builds a :data:`~msa_core.types.CoalitionMatrix`
for a whole block and hands it to :class:`GameRunner`, which slices it into ``batch_size`` rows per
game call, checks what the game returns, counts evaluations and reports progress.

Sampling estimators draw i.i.d. *sample units* (a permutation, an antithetic pair, a stratified
block), each seeded by ``(seed, unit_index)``. A unit's draw therefore depends neither on the batch
size nor on how units are grouped, and blocks of units can be computed anywhere (locally, after a
resume, on Ray workers) and merged in unit order with identical results.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from ..accumulate import DiskMoments, MomentAccumulator
from ..result import ShapleyResult
from ..types import CoalitionMatrix, Game, GameValues
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

ProgressCallback = Callable[[int, int], Any]
"""``progress(done, total)``: game evaluations done so far and the planned total."""

# Upper bound on floats returned by one game call when the caller gives no batch size: keeps an
# image game (tens of thousands of outputs per coalition) within a few hundred MB per call.
MAX_ELEMENTS_PER_CALL = 2**24
DEFAULT_BATCH_SIZE = 4096


class RunCancelled(RuntimeError):
    """Raised inside an estimator when its ``cancel`` flag is set; the partial state is kept."""


class _CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class GameRunner:
    """Calls a game on coalition matrices in batches, validating and counting.

    Args:
        game: callable ``(batch, n_players) bool -> (batch, *output_shape) float``.
        n_players: number of players.
        batch_size: coalitions per game call (None: chosen from the output size).
        device: device on which values are returned (accumulators live there).
        progress: optional ``progress(done, total)`` callback.
        cancel: optional object with ``is_set()``; when set, the next call raises :class:`RunCancelled`.
    """

    def __init__(
        self,
        game: Game,
        n_players: int,
        *,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        progress: ProgressCallback | None = None,
        cancel: _CancelFlag | None = None,
    ) -> None:
        if not callable(game):
            raise TypeError(f"game must be callable on a coalition matrix; got {type(game).__name__}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        self.game = game
        self.n_players = n_players
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.progress = progress
        self.cancel = cancel
        self.n_evaluations = 0
        self.total = 0
        self.output_shape: tuple[int, ...] | None = None

    # -------------------------------------------------------------- checks
    def check_cancel(self) -> None:
        """Raise :class:`RunCancelled` if the cancel flag is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise RunCancelled("the run was cancelled")

    def _validate(self, values: Any, coalitions: CoalitionMatrix) -> GameValues:
        if not isinstance(values, torch.Tensor):
            raise TypeError(
                "the game must return a torch.Tensor of shape (batch, *output_shape); "
                f"it returned {type(values).__name__}"
            )
        if values.ndim == 0 or values.shape[0] != coalitions.shape[0]:
            raise ValueError(
                f"the game returned shape {tuple(values.shape)} for {coalitions.shape[0]} coalitions; "
                "its first dimension must be the batch of coalitions"
            )
        if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64, torch.bool)):
            raise TypeError(f"the game must return real numbers; got dtype {values.dtype}")
        values = values.to(self.device, torch.float64)
        shape = tuple(values.shape[1:])
        if self.output_shape is None:
            self.output_shape = shape
        elif shape != self.output_shape:
            raise ValueError(
                f"the game changed its output shape from {self.output_shape} to {shape} between calls"
            )
        bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            lesioned = (~coalitions[row]).nonzero().flatten().tolist()
            shown = lesioned[:10] + (["..."] if len(lesioned) > 10 else [])
            raise ValueError(
                f"the game returned NaN or infinity for {int(bad.sum())} coalition(s); the first one "
                f"lesions units {shown} ({len(lesioned)} lesioned). Check the objective for divisions "
                "by zero or log(0) when many units are lesioned."
            )
        return values

    def _rows_per_call(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        preferred = getattr(self.game, "preferred_batch_size", None)
        if isinstance(preferred, int) and preferred > 0:
            return preferred
        if self.output_shape is None:
            return DEFAULT_BATCH_SIZE
        per_row = max(1, math.prod(self.output_shape))
        return max(1, min(DEFAULT_BATCH_SIZE, MAX_ELEMENTS_PER_CALL // per_row))

    # -------------------------------------------------------------- evaluation
    def __call__(self, coalitions: CoalitionMatrix) -> GameValues:
        """Evaluate ``(batch, n_players)`` coalitions; returns float64 ``(batch, *output_shape)``."""
        if coalitions.dtype != torch.bool or coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            raise ValueError(
                f"coalitions must be a bool tensor of shape (batch, {self.n_players}); "
                f"got {coalitions.dtype} of shape {tuple(coalitions.shape)}"
            )
        chunks: list[torch.Tensor] = []
        start = 0
        while start < coalitions.shape[0]:
            self.check_cancel()
            rows = self._rows_per_call()
            chunk = coalitions[start : start + rows]
            try:
                values = self.game(chunk)
            except Exception as error:  # halve the batch on out-of-memory: results do not change
                if _is_out_of_memory(error) and rows > 1:
                    self.batch_size = max(1, rows // 2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                raise
            chunks.append(self._validate(values, chunk))
            start += chunk.shape[0]
            self.count(chunk.shape[0])
        if not chunks:
            return torch.empty((0, *(self.output_shape or ())), dtype=torch.float64, device=self.device)
        return torch.cat(chunks)

    def count(self, n: int) -> None:
        """Record ``n`` evaluations and report progress."""
        self.n_evaluations += n
        if self.progress is not None:
            self.progress(self.n_evaluations, max(self.total, self.n_evaluations))

    def endpoints(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v(empty), v(N))``, each ``(*output_shape)`` float64, in one game call."""
        coalitions = torch.zeros((2, self.n_players), dtype=torch.bool)
        coalitions[1] = True
        values = self(coalitions)
        return values[0], values[1]


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
