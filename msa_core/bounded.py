"""Sampling in bounded memory: block sizing, streamed join orders, accumulators on disk.

:func:`memory_plan` decides, from ``max_memory`` and the game's size, how a sampling run keeps within
the bound:

* ``"blocks"``: the usual loop (blocks of sample units ``(units, n, *output)``, merged with Chan's
  update), with as many units per block as fit (the unbounded block size where it fits, so the run
  is bit-identical to one without a bound);
* ``"stream"`` (permutation, antithetic, truncated, owen, topk): one unit at a time, ``chunk`` players
  at a time (:meth:`~msa_core.estimators.base.SamplingEstimator.stream_unit`: a join order's chain
  walked ``chunk`` positions at a time, or ``chunk`` players' flipped Owen coalitions per stratum;
  topk walks each join order of a round the same way, or ``chunk`` unresolved units' pairs at a time);
  each chunk's samples are merged into the rows of the players it reached
  (:func:`~msa_core.accumulate.welford_rows`), so neither a unit's samples ``(n, *output)`` nor its
  chain values are ever held whole. Accumulators stay in memory where they fit, else on disk
  (:class:`~msa_core.accumulate.DiskMoments`).

Values equal an unbounded run's to float rounding, at the game's own precision. Merging one sample
at a time is Chan's update with blocks of one (~1e-15 relative), and a float64 game gives the same
values either way. But an unbounded run takes a game's chain values from its
``evaluate_permutations`` where it has one (the lesion games: :mod:`msa_core.games_chain`), while a streamed walk evaluates the chain's coalitions one by one: the two paths
round differently, so for a float32 model the values differ at float32 rounding, not 1e-15 (the two
paths' chain values on mlp-digits: 9e-9 apart for "class probability", range 0.36; 1.3e-5 for
"output", range 49: about 3e-8 to 3e-7 of the game's range).
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .accumulate import DiskMoments, MomentAccumulator
from .memory import format_bytes
from .ondisk import DEFAULT_CHUNK_BYTES

__all__ = ["MemoryPlan", "memory_plan", "stream_estimate", "disk_result", "STREAMING_METHODS", "scratch_folder"]

STREAMING_METHODS = ("permutation", "antithetic", "truncated", "owen", "topk")
"""Methods that can stream a unit chunk by chunk (and so keep any game under any bound); their
estimators have ``streams = True`` and implement ``stream_unit`` (topk streams its rounds itself,
:meth:`~msa_core.estimators.topk.TopKEstimator.estimate`)."""

_F64 = 8
# Live (n_players, *output) float64 arrays per sample unit in the block loop, at the peak (chain
# values, runner batches and their concatenation, steps, marginals, deviations): measured shapes of
# the code paths, rounded up.
_UNIT_ARRAYS = {"permutation": 6, "antithetic": 13, "truncated": 7, "topk": 4}
# Live (n_players, *output) arrays of the accumulators in the block loop: mean, m2, the block's own
# mean and m2, and the merge's temporaries.
_BLOCK_ACC_ARRAYS = 6
_CHECKPOINT_ARRAYS = 3  # a checkpoint copies mean and m2 and serialises them
# topk merges its block's join orders one at a time (per-row counts): mean, m2 and the temporaries of
# a merge of all rows (gathered mean and m2, deviations, products, the new mean and m2)
_TOPK_ACC_ARRAYS = 8
# Live (*output) rows per chain position (per player for owen) in the streamed walk: values, runner
# batches, steps, gathered mean and m2, deviations and the merged rows (twice for antithetic pairs;
# truncated adds the cut copy; owen holds n_strata flipped values and marginals per player).
_STREAM_ROWS = {"permutation": 10, "antithetic": 20, "truncated": 12, "topk": 12}


def _coalition_bytes(estimator: Any, n_players: int) -> tuple[int, int]:
    """Bytes of bool coalitions and small per-player arrays: ``(per unit of a block, per position of
    a streamed step)``. Only topk's are counted: its pair rounds build ``(units, n)`` masks twice."""
    if estimator.name != "topk":
        return 0, 0
    return 3 * n_players * n_players, 6 * n_players


def _stream_rows(estimator: Any) -> tuple[int, int]:
    """``(rows per player of a chunk, rows held for the whole unit)`` of a streamed unit."""
    if estimator.name == "owen":
        strata = int(getattr(estimator, "n_strata", 8))
        return 4 * strata + 10, 2 * strata + 2  # held: the strata's base values and their runner batch
    return _STREAM_ROWS.get(estimator.name, 20), 4


@dataclass
class MemoryPlan:
    """How a sampling run keeps within ``max_memory`` (see module docstring).

    Attributes:
        mode: "blocks" or "stream".
        block: sample units per block ("blocks") or 1 ("stream").
        chunk: chain positions per step of the streamed walk (``n_players`` in "blocks").
        on_disk: whether the accumulators live on disk.
        chunk_bytes: size of the on-disk chunk files.
        max_memory: the bound in bytes.
        estimate_bytes: the plan's own estimate of its peak working memory.
    """

    mode: str
    block: int
    chunk: int
    on_disk: bool
    chunk_bytes: int
    max_memory: int
    estimate_bytes: int

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for result metadata)."""
        return {"mode": self.mode, "block": self.block, "chunk": self.chunk, "on_disk": self.on_disk,
                "max_memory": self.max_memory, "estimate_bytes": self.estimate_bytes}


def _unit_arrays(estimator: Any) -> int:
    if estimator.name == "owen":
        return 3 * int(getattr(estimator, "n_strata", 8)) + 3
    return _UNIT_ARRAYS.get(estimator.name, 8)


def memory_plan(
    estimator: Any,
    n_players: int,
    output_size: int,
    max_memory: int,
    *,
    checkpoints: bool = False,
    natural_block: int | None = None,
) -> MemoryPlan:
    """The cheapest way to run ``estimator`` on this game within ``max_memory`` bytes.

    ``"blocks"`` where one block of units fits, else ``"stream"`` for the methods that stream
    (:data:`STREAMING_METHODS`), with ``chunk`` players (chain positions) per step and the
    accumulators on disk unless they fit in half the bound. Raises ValueError with the sizes
    involved where no way fits (a method that cannot stream, or a bound below what one player's
    output rows need). For topk a block's units are the join orders of one round evaluated in one
    game call (``natural_block``: its ``permutations_per_round``), and a streamed step holds ``chunk``
    chain positions or unresolved units of one join order.
    """
    mode_size = n_players * max(1, output_size) * _F64  # one (n, *output) float64 array
    natural = natural_block or estimator.units_per_block(n_players, output_size)
    acc_arrays = _TOPK_ACC_ARRAYS if estimator.name == "topk" else _BLOCK_ACC_ARRAYS
    acc_blocks = (acc_arrays + (_CHECKPOINT_ARRAYS if checkpoints else 0)) * mode_size
    unit_masks, position_masks = _coalition_bytes(estimator, n_players)
    per_unit = _unit_arrays(estimator) * mode_size + unit_masks
    if acc_blocks + per_unit <= max_memory:
        block = int(min(natural, max(1, (max_memory - acc_blocks) // per_unit)))
        return MemoryPlan("blocks", block, n_players, False, DEFAULT_CHUNK_BYTES, max_memory,
                          acc_blocks + block * per_unit)
    if not getattr(estimator, "streams", False):
        raise ValueError(
            f"method {estimator.name!r} needs about {format_bytes(acc_blocks + per_unit)} for {n_players} players "
            f"with {output_size} outputs each, over max_memory={format_bytes(max_memory)}; methods "
            f"{', '.join(STREAMING_METHODS)} run within any bound (accumulators on disk)"
        )
    row = max(1, output_size) * _F64
    rows_per_position, rows_held = _stream_rows(estimator)
    per_position = rows_per_position * row + position_masks
    held_round = 16 * n_players * natural if estimator.name == "topk" else 0  # a round's summaries, positions
    in_memory = (2 + (_CHECKPOINT_ARRAYS if checkpoints else 0)) * mode_size + rows_held * row + held_round
    chunk_bytes = int(max(row, min(DEFAULT_CHUNK_BYTES, max_memory // 16)))
    if in_memory + 8 * per_position <= max_memory // 2:  # accumulators fit with room for the walk
        on_disk, held = False, in_memory
    else:
        on_disk, held = True, 2 * chunk_bytes + rows_held * row + held_round
    chunk = int(min(max(1, n_players), (max_memory - held) // per_position))
    if chunk < 1:
        raise ValueError(
            f"max_memory={format_bytes(max_memory)} is too small for outputs of {output_size} values: a "
            f"streamed {estimator.name} unit needs about {format_bytes(held + per_position)} (one player a step)"
        )
    return MemoryPlan("stream", 1, chunk, on_disk, chunk_bytes, max_memory, held + chunk * per_position)


def scratch_folder(scratch_dir: str | Path | None) -> Path:
    """A new folder for on-disk accumulators under ``scratch_dir`` (default: the temp directory)."""
    base = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
    path = base / f"msa-moments-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


# ---------------------------------------------------------------------- streamed chains
def _prefix_values(runner: Any, positions: torch.Tensor, lengths: torch.Tensor, complement: bool) -> torch.Tensor:
    """Values of the prefixes (or their complements) of one join order: ``(len(lengths), *output)``."""
    coalitions = positions.unsqueeze(0) < lengths.view(-1, 1)
    return runner(~coalitions if complement else coalitions)


def chain_chunks(
    runner: Any,
    order: torch.Tensor,
    empty: torch.Tensor,
    intact: torch.Tensor,
    chunk: int,
    *,
    reverse: bool = False,
    align: int | None = None,
    stop: Callable[[torch.Tensor], int | None] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Walk one join order ``chunk`` positions at a time: yields ``(players, marginals)``.

    ``order`` is int64 ``(n,)``; players ``order[j0:j1]`` come with their marginal contributions
    ``(j1 - j0, *output)`` along ``order`` (``reverse=False``) or along ``order`` reversed
    (``reverse=True``: the antithetic partner, whose prefixes are the complements of the suffixes),
    computed from the same coalitions as :func:`~msa_core.estimators.permutation.chain_values`.

    Truncation (the truncated estimator): pieces never cross a multiple of ``align`` positions, and
    ``stop(values)`` is called on the walk's start value (a ``(1, *output)`` batch) and then on each
    piece's evaluated values ``(k, *output)`` in walk order; the first offset it returns cuts the
    chain there: from that value on the chain sits at its end value (``v(empty)`` for
    ``reverse=True``), so the player at the cut absorbs the rest and later players get 0. The walk
    still evaluates the rest of the cut ``align`` stretch (as the batched truncated walk does, so
    evaluation counts agree), then evaluates nothing more.
    """
    n = int(order.shape[0])
    positions = torch.empty_like(order)
    positions[order] = torch.arange(n)
    start, end = (intact, empty) if reverse else (empty, intact)
    align = int(align or n)
    cut = stop is not None and stop(start.unsqueeze(0)) is not None
    previous = start
    j0 = 0
    while j0 < n:
        stretch = (j0 // align + 1) * align  # the next multiple of align
        j1 = min(n, j0 + chunk, stretch)
        if cut:
            values = end.expand(j1 - j0, *end.shape)
        else:
            lengths = torch.arange(j0 + 1, min(j1, n - 1) + 1)
            values = _prefix_values(runner, positions, lengths, reverse) if len(lengths) else end.new_empty((0, *end.shape))
            hit = stop(values) if stop is not None and len(values) else None
            if j1 == n:
                values = torch.cat([values, end.unsqueeze(0)])
            if hit is not None:
                cut = True
                values[int(hit):] = end
                for k0 in range(j1 + 1, min(stretch, n - 1) + 1, chunk):  # the rest of the stretch
                    _prefix_values(runner, positions, torch.arange(k0, min(k0 + chunk, stretch + 1, n)), reverse)
        before = torch.cat([previous.unsqueeze(0), values[:-1]])
        marginals = before - values if reverse else values - before
        previous = values[-1]
        yield order[j0:j1], marginals
        j0 = j1


def stream_estimate(
    estimator: Any,
    runner: Any,
    n_players: int,
    *,
    seed: int,
    total_units: int,
    state: Any,
    empty: torch.Tensor,
    intact: torch.Tensor,
    plan: MemoryPlan,
    scratch_dir: str | Path | None,
    on_block: Callable[[Any], Any] | None,
) -> None:
    """The sampling loop of ``plan.mode == "stream"``: merges units ``state.next_unit..total_units-1``.

    A cancel request takes effect between units (the state is then whole). Any other error inside a
    unit resets ``state`` to no samples so that no half-merged unit is ever checkpointed (the last
    checkpoint, taken after a whole unit, stays the one to resume from).
    """
    shape = (n_players, *empty.shape)
    acc = state.accumulator
    if isinstance(acc, MomentAccumulator) and acc.count == 0 and plan.on_disk:
        acc = state.accumulator = DiskMoments.create(scratch_folder(scratch_dir), shape, chunk_bytes=plan.chunk_bytes)
    cancel = runner.cancel
    while state.next_unit < total_units:
        runner.check_cancel()
        unit = state.next_unit
        runner.cancel = None  # a unit is merged whole: cancellation waits for its end
        try:
            if isinstance(acc, DiskMoments):
                acc.begin_sample()
            for players, samples in estimator.stream_unit(runner, n_players, seed, unit, empty, intact, plan.chunk):
                acc.update_rows(players, samples, shape)
            acc.finish_sample()
        except BaseException:
            state.accumulator, state.next_unit, state.n_evaluations = MomentAccumulator(), 0, 2
            raise
        finally:
            runner.cancel = cancel
        state.next_unit = unit + 1
        state.n_evaluations = runner.n_evaluations
        if on_block is not None:
            on_block(state)


def disk_result(estimator: Any, state: Any, *, seed: int, elapsed_s: float, max_bytes: int) -> Any:
    """The :class:`~msa_core.result.ShapleyResult` of on-disk moments: values and stderr stay on disk."""
    acc = state.accumulator
    stderr = acc.finalize_stderr(max_bytes)
    finish = getattr(estimator, "finish_on_disk", None)  # topk's means are its values as they are
    if finish is not None:
        finish(acc.mean, stderr, state, max_bytes=max_bytes)
    return state.to_result(acc.mean, stderr, method=estimator.name, seed=seed, elapsed_s=elapsed_s,
                           n_samples=acc.count, metadata={"arrays": str(acc.path)})
