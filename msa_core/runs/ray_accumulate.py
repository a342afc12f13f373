"""Ray, accumulate on workers: each worker runs the estimator on a range of sample units and returns moments.

The Ray backend's default path (:class:`~msa_core.runs.ray_backend.RayGame`) sends the values of every
coalition back to the driver, ``(coalitions, *output)`` per call. For a sampling method (permutation,
antithetic, owen, truncated) on a game with a large output this mode sends far less: the driver deals
*rounds* of ``W x R`` sample units (``W`` workers, ``R`` units per task); a worker rebuilds the game from
the spec (:func:`~msa_core.runs.ray_backend.worker_game`, with the run-key check), runs the estimator's
own loop on its contiguous range ``[a, b)`` (the one estimator call,
:func:`~msa_core.runs.execute.run_estimator`, on a :class:`SamplingState` resumed at ``next_unit=a`` with
the driver's endpoints and a budget that buys ``b`` units) and returns its moment accumulator (count,
mean and ``m2`` of shape ``(n_players, *output)``). The driver merges a round's accumulators in worker
order (Chan's update, :meth:`MomentAccumulator.merge`), then calls ``on_block`` (checkpoints), so cancel
and resume work between rounds. A unit's samples do not depend on where it is computed, so values equal
a local run's with the same seed to float rounding (~1e-15 relative; the merge tree differs, so not bit
for bit) with the same evaluation count; a resumed run equals an uninterrupted one bit for bit (rounds
are a function of the unit index).

Bytes per task: ``16 n x output`` (float64 mean and ``m2``) for ``R`` units, against
``R x evaluations_per_unit x output x itemsize`` in the driver mode. Where those moments do not fit a
worker's ``max_memory`` they stay on disk, in a folder the driver and the workers share
(:mod:`msa_core.runs.ray_disk`): a task then returns a path and counts, and the driver merges row ranges
into its own on-disk moments. A checkpoint records the mode and ``R`` (``ray_accumulate`` in its info);
a resume keeps that ``R`` (:func:`choose_accumulate`'s ``recorded``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch

from ..accumulate import MomentAccumulator
from ..estimators import GameRunner, SamplingEstimator, SamplingState
from ..memory import format_bytes, resolve_max_memory
from .spec import RunSpec

__all__ = ["accumulate_units", "choose_accumulate", "run_on_workers", "ACCUMULATE_MODES", "LARGE_OUTPUT",
           "DEFAULT_ROUNDS"]

ACCUMULATE_MODES = ("workers", "driver")
LARGE_OUTPUT = 1024
"""Without a choice, sampling runs whose coalitions have at least this many output values accumulate on
workers (when that returns fewer bytes); smaller games keep the driver mode (bit-identical to local)."""
DEFAULT_ROUNDS = 4
"""Rounds (checkpoints) a workers-mode run is dealt in, without ``units_per_task``."""


def _worker_memory(estimator: Any, n_players: int, output_size: int, max_memory: int) -> tuple[bool, str | None]:
    """``(on_disk, problem)`` of a worker's accumulators under ``max_memory`` bytes: ``on_disk`` where they
    do not fit in memory (kept on disk, :mod:`msa_core.runs.ray_disk`), ``problem`` (one line) where the
    method cannot run within the bound at all."""
    from ..bounded import memory_plan

    try:
        return memory_plan(estimator, n_players, output_size, int(max_memory)).on_disk, None
    except ValueError as error:
        return False, str(error)


def _moments_text(n_players: int, output_size: int, max_memory: int) -> str:
    need = 2 * n_players * max(1, output_size) * 8
    return (f"a worker's accumulators ({format_bytes(need)}: mean and m2 of {n_players} players x {output_size} "
            f"outputs) do not fit in its memory bound {format_bytes(max_memory)}")


def _truncation(estimator: Any) -> dict[str, Any]:
    """The truncated method's result metadata (as its ``estimate`` writes it) for a streamed range."""
    if not hasattr(estimator, "truncated_steps"):
        return {}
    total = estimator.total_steps
    return {"truncation": {"tolerance": estimator.tolerance, "floor": estimator.floor,
                           "skipped_fraction": estimator.truncated_steps / total if total else 0.0}}


def accumulate_units(spec_dict: dict[str, Any], key: str | None, start: int, stop: int, empty: np.ndarray,
                     intact: np.ndarray, max_memory: int | None, parts_dir: str | None = None) -> dict[str, Any]:
    """Worker side: the moments of sample units ``[start, stop)`` of the run; runs anywhere, Ray or not.

    Args:
        spec_dict, key: the run (``RunSpec.to_dict()``) and the driver's run key (checked).
        start, stop: the range of sample units (join orders, pairs, Owen units).
        empty, intact: the driver's ``v(empty)`` and ``v(N)``, ``(*output)``.
        max_memory: the worker's memory bound in bytes (None: half its free memory).
        parts_dir: the driver's parts folder (:func:`~msa_core.runs.ray_disk.parts_folder`): where the
            accumulators go when they do not fit in ``max_memory``; None: ValueError where they do not.

    Returns:
        ``{"count", "mean", "m2", "n_evaluations", "seconds", "metadata"}``: ``mean`` and ``m2`` float64
        numpy ``(n_players, *output)`` of the ``stop - start`` samples, the evaluations they cost, and
        the method's result metadata (e.g. "truncation"). On disk ``"path"`` (a
        :class:`~msa_core.accumulate.DiskMoments` folder in ``parts_dir``) replaces ``mean`` and ``m2``.
    """
    from ..bounded import memory_plan
    from .execute import run_estimator
    from .ray_backend import worker_game
    from .ray_disk import accumulate_on_disk

    began = time.perf_counter()
    resolved, game = worker_game(spec_dict, key)
    spec = RunSpec.from_dict(spec_dict)  # the cached resolved run may carry another method or seed
    resolved = dataclasses.replace(resolved, spec=spec)
    estimator = _estimator(spec)
    n = int(game.n_players)
    bound = resolve_max_memory(max_memory)
    output_size = int(np.prod(empty.shape, dtype=np.int64))
    plan = memory_plan(estimator, n, output_size, bound)  # ValueError where the method cannot meet the bound
    state = SamplingState(next_unit=int(start), n_evaluations=0, empty=torch.as_tensor(empty, dtype=torch.float64),
                          intact=torch.as_tensor(intact, dtype=torch.float64))
    if plan.on_disk:
        if parts_dir is None:
            raise ValueError(f"{_moments_text(n, output_size, bound)} and the driver gave no folder for them; run "
                             "with ray_options={'accumulate': 'driver'} or a larger max_memory")
        part = accumulate_on_disk(estimator, game, spec, state, int(stop), parts_dir, plan)
        return {**part, "seconds": time.perf_counter() - began, "metadata": _truncation(estimator)}
    budget = 2 + int(stop) * estimator.evaluations_per_unit(n)
    with torch.no_grad():
        result = run_estimator(resolved, game, state=state, budget=budget, max_memory=bound)
    moments = state.accumulator
    if not isinstance(moments, MomentAccumulator) or moments.count != stop - start:
        raise ValueError(f"the worker merged {moments.count} samples for units [{start}, {stop}) (or kept them on disk)")
    return {"count": int(moments.count), "mean": moments.mean.cpu().numpy(), "m2": moments.m2.cpu().numpy(),
            "n_evaluations": int(state.n_evaluations), "seconds": time.perf_counter() - began,
            "metadata": {k: v for k, v in result.metadata.items() if k == "truncation"}}


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A worker's array without a copy: Ray hands it over read-only, and ``merge`` never writes to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array).to(device)


def _estimator(spec: Any) -> Any:
    from ..estimators import make_estimator

    return make_estimator(spec.method, **spec.options_dict)


def choose_accumulate(requested: str | None, spec: Any, n_players: int, output_size: int, n_workers: int,
                      max_memory: int | str | None, units_per_task: int | None = None, *,
                      recorded: int | None = None) -> dict[str, Any]:
    """Where a Ray run accumulates: ``{"mode", "reason", "units_per_task", "on_disk"}``.

    ``mode`` is "workers" or "driver". ``requested`` (``ray_options["accumulate"]``, else
    ``$MSA_RAY_ACCUMULATE``; None or "auto": the default) is honoured where it can be: a non-sampling
    method (exact, topk, regression, auto) always distributes evaluations. Where a worker's accumulators
    do not fit in ``max_memory`` (each worker's bound; None: half the free memory) they go on disk
    (``on_disk``, :mod:`msa_core.runs.ray_disk`); "workers" falls back to "driver", with a warning, only
    where the method cannot meet the bound at all. The default is "workers" for a sampling method whose
    coalitions have at least :data:`LARGE_OUTPUT` values and whose tasks then return fewer bytes.

    ``recorded`` is the units per task of the workers-mode checkpoint being resumed: it is kept (with
    a warning where ``units_per_task`` asks for another), because a round's parts are merged in unit
    order from multiples of it, so the resumed values equal the uninterrupted run's bit for bit.
    """
    requested = requested or os.environ.get("MSA_RAY_ACCUMULATE") or "auto"
    if requested not in (*ACCUMULATE_MODES, "auto"):
        raise ValueError(f"accumulate must be 'workers', 'driver' or 'auto'; got {requested!r}")
    if units_per_task is not None and int(units_per_task) < 1:
        raise ValueError(f"units_per_task must be a positive integer; got {units_per_task!r}")
    from .spec import budget_evaluations

    def choice(mode: str, reason: str, per_task: int = 0, on_disk: bool = False) -> dict[str, Any]:
        return {"mode": mode, "reason": reason, "units_per_task": int(per_task), "on_disk": bool(on_disk)}

    estimator = _estimator(spec)
    if not isinstance(estimator, SamplingEstimator) or getattr(estimator, "permutations", None) is not None:
        return choice("driver", f"method {spec.method!r} is not a sampling method: evaluations are distributed")
    total = int(estimator.plan(n_players, budget_evaluations(spec, n_players))["n_units"])
    per_task = int(units_per_task or math.ceil(total / (max(1, n_workers) * DEFAULT_ROUNDS)))
    per_task = max(per_task, int(estimator.min_units), 1)
    if recorded and int(recorded) != per_task:
        if units_per_task is not None:
            warnings.warn(f"resuming with the checkpoint's units_per_task={int(recorded)} (asked for {per_task}): "
                          "the resumed values then equal the uninterrupted run's", stacklevel=3)
        per_task = int(recorded)
    if requested == "driver":
        return choice("driver", "asked for", per_task)
    bound = resolve_max_memory(max_memory)
    on_disk, refused = _worker_memory(estimator, n_players, output_size, bound)
    if refused is not None:
        if requested == "workers":
            warnings.warn(f"accumulating on the driver: {refused}", stacklevel=3)
        return choice("driver", refused, per_task)
    disk_text = f"{_moments_text(n_players, output_size, bound)}: kept on disk, workers return paths"
    if requested == "workers":
        return choice("workers", disk_text if on_disk else "asked for", per_task, on_disk)
    moments_bytes = 0 if on_disk else 16 * n_players * max(1, output_size)
    samples_bytes = per_task * estimator.evaluations_per_unit(n_players) * max(1, output_size) * 4
    if output_size >= LARGE_OUTPUT and moments_bytes < samples_bytes:
        what = disk_text if on_disk else "moments are fewer bytes than samples"
        return choice("workers", f"{output_size} outputs per coalition: {what}", per_task, on_disk)
    return choice("driver", f"{output_size} outputs per coalition: samples are few bytes", per_task)


def run_on_workers(resolved: Any, ray_game: Any, state: SamplingState, *, units_per_task: int,
                   progress: Callable[[int, int], Any] | None = None, on_block: Callable[[SamplingState], Any] | None = None,
                   max_memory: int | str | None = None, parts_dir: Any = None, scratch_dir: Any = None) -> Any:
    """Driver side: the run's sampling loop, rounds of units dealt to ``ray_game``'s workers.

    Args:
        resolved: the run (spec and key).
        ray_game: the run's :class:`~msa_core.runs.ray_backend.RayGame` (its workers, cancel flag and
            byte count; it also evaluates the endpoints if ``state`` has none).
        state: the run's state, resumed or new; merged into in place (``next_unit`` after every part,
            so a checkpoint taken at any time is whole).
        units_per_task: ``R``, units per worker per round (a round is ``workers x R`` units).
        progress, on_block: as for the estimator (evaluations; after every merged round).
        max_memory: each worker's memory bound (None: half a worker's free memory); in the on-disk
            mode also the driver's.
        parts_dir: the on-disk mode (:mod:`msa_core.runs.ray_disk`): the parts folder the workers write
            their moments to (removed at the end); the driver's moments then live on disk under
            ``scratch_dir`` and are merged into range by range. None: moments travel in memory.

    Returns:
        The :class:`ShapleyResult` (``values`` ``(n_players, *output)``, on-disk arrays in the on-disk
        mode), from the method's own ``result_from_state`` (``finish_on_disk``).
    """
    from ..bounded import disk_result
    from ..estimators.base import begin_run
    from .ray_disk import merge_bytes, merge_part, remove_parts, to_disk
    from .spec import budget_evaluations

    started = time.perf_counter()
    spec = resolved.spec
    estimator = _estimator(spec)
    n = int(ray_game.n_players)
    total = int(estimator.plan(n, budget_evaluations(spec, n))["n_units"])
    planned = 2 + total * estimator.evaluations_per_unit(n)
    runner = GameRunner(ray_game, n, device=spec.device, progress=progress, cancel=ray_game.cancel)
    state, empty, intact = begin_run(runner, state, planned)
    if progress is not None:
        progress(state.n_evaluations, planned)
    ray = ray_game.ray
    empty_ref, intact_ref = ray.put(empty.cpu().numpy()), ray.put(intact.cpu().numpy())
    bound = None if max_memory is None else resolve_max_memory(max_memory)
    chunk = merge_bytes(resolve_max_memory(bound), empty.numel())
    folder = None if parts_dir is None else str(parts_dir)
    workers = ray_game.workers
    # truncated: units merged and their skipped fraction summed (weighted by units), in the checkpoint, so a
    # resumed run reports the whole run's skipped_fraction, not only this session's parts
    saved = state.extra.get("ray_truncation")
    truncation = [float(saved[0]), float(saved[1])] if saved is not None else [0.0, 0.0]
    try:
        if folder is not None:
            state.accumulator = to_disk(state.accumulator, (n, *empty.shape), scratch_dir, chunk)
        while state.next_unit < total:
            runner.check_cancel()
            starts = range(state.next_unit, min(total, state.next_unit + len(workers) * units_per_task), units_per_task)
            ranges = [(a, min(total, a + units_per_task)) for a in starts]
            refs = [workers[i].accumulate.remote(ray_game.spec_dict, ray_game.key, a, b, empty_ref, intact_ref, bound,
                                                 folder) for i, (a, b) in enumerate(ranges)]
            ray_game.calls += 1
            for (a, b), part in zip(ranges, ray_game.wait(refs)):  # worker order is unit order
                if folder is not None:
                    merge_part(state.accumulator, part, chunk)
                else:
                    state.accumulator.merge(MomentAccumulator(
                        count=part["count"], mean=_tensor(part["mean"], empty.device), m2=_tensor(part["m2"], empty.device)))
                state.n_evaluations += int(part["n_evaluations"])
                state.next_unit = b
                if "truncation" in part["metadata"]:
                    truncation[0] += b - a
                    truncation[1] += (b - a) * part["metadata"]["truncation"]["skipped_fraction"]
                    state.extra["ray_truncation"] = torch.tensor(truncation, dtype=torch.float64)
            if progress is not None:
                progress(state.n_evaluations, max(planned, state.n_evaluations))
            if on_block is not None:
                on_block(state)
    finally:
        remove_parts(parts_dir)
    elapsed = time.perf_counter() - started
    if folder is not None:
        result = disk_result(estimator, state, seed=spec.seed, elapsed_s=elapsed, max_bytes=chunk)
    else:
        result = estimator.result_from_state(state, seed=spec.seed, elapsed_s=elapsed)
    if truncation[0]:  # weighted by units: each unit has the same number of chain steps
        result.metadata["truncation"] = dict(_truncation(estimator)["truncation"],
                                             skipped_fraction=truncation[1] / truncation[0])
    return result
