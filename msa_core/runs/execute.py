"""Running a :class:`RunSpec`: cached, checkpointed, resumable, locally or on Ray.

``execute(spec)`` resolves the spec to its run key, returns the stored run if there is one, and
otherwise computes it with :func:`msa_core.shapley_modes`, saving the sampling state into the store
at most every ``checkpoint_interval`` seconds (and when it stops: cancelled, failed or done). A run
that was killed resumes from its checkpoint and finishes with the same values as an uninterrupted
run, because sample units are seeded by ``(seed, unit)`` and blocks merge in unit order.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import torch

from ..estimators import RunCancelled, SamplingEstimator, SamplingState, make_estimator, shapley_modes
from ..estimators.base import GameRunner
from ..accumulate import MomentAccumulator
from .spec import ResolvedRun, RunSpec, resolve
from .store import RunRecord, RunStore

__all__ = ["execute", "block_ranges", "block_accumulator", "DEFAULT_CHECKPOINT_INTERVAL"]

DEFAULT_CHECKPOINT_INTERVAL = 2.0
"""Seconds between checkpoints (``$MSA_CHECKPOINT_INTERVAL`` overrides it)."""

ProgressCallback = Callable[[int, int], Any]


def _checkpoint_interval(value: float | None) -> float:
    if value is not None:
        return float(value)
    env = os.environ.get("MSA_CHECKPOINT_INTERVAL")
    try:
        return float(env) if env else DEFAULT_CHECKPOINT_INTERVAL
    except ValueError:
        return DEFAULT_CHECKPOINT_INTERVAL


def _units_text(units: list[Any]) -> str:
    return ", ".join(u if isinstance(u, str) else getattr(u, "path", repr(u)) for u in units)


def block_ranges(estimator: SamplingEstimator, n_players: int, output_size: int, total_units: int, start: int = 0) -> list[range]:
    """The unit ranges that :meth:`SamplingEstimator.estimate` merges, in order, from unit ``start``."""
    size = estimator.units_per_block(n_players, output_size)
    return [range(a, min(total_units, a + size)) for a in range(start, total_units, size)]


def block_accumulator(
    estimator: SamplingEstimator,
    runner: GameRunner,
    n_players: int,
    seed: int,
    units: range,
    empty: torch.Tensor,
    intact: torch.Tensor,
) -> MomentAccumulator:
    """One block's accumulator, exactly as :meth:`SamplingEstimator.estimate` computes it."""
    samples = estimator.unit_samples(runner, n_players, seed, units, empty, intact)
    return MomentAccumulator.from_samples(samples)


class _Checkpointer:
    """``on_block`` hook: saves the sampling state at most every ``interval`` seconds."""

    def __init__(self, store: RunStore, key: str, interval: float, info: dict[str, Any]) -> None:
        self.store, self.key, self.interval, self.info = store, key, interval, info
        self.last = time.monotonic()
        self.saves = 0
        self.state: SamplingState | None = None

    def __call__(self, state: SamplingState) -> None:
        self.state = state
        if time.monotonic() - self.last >= self.interval:
            self.save(state)

    def save(self, state: SamplingState | None = None) -> None:
        state = state or self.state
        if state is None or state.empty is None or state.next_unit == 0:
            return
        self.store.save_checkpoint(self.key, state.state_dict(), self.info)
        self.saves += 1
        self.last = time.monotonic()


def execute(
    spec: RunSpec,
    store: RunStore | None = None,
    progress: ProgressCallback | None = None,
    cancel: Any = None,
    *,
    refresh: bool = False,
    backend: str = "local",
    address: str | None = None,
    checkpoint_interval: float | None = None,
    resolved: ResolvedRun | None = None,
    ray_options: dict[str, Any] | None = None,
) -> RunRecord:
    """Compute (or fetch) the run described by ``spec``; synchronous.

    Args:
        spec: the run's parameters.
        store: where runs and checkpoints live (default ``RunStore()``).
        progress: ``progress(done, total)`` in game evaluations.
        cancel: object with ``is_set()``; when set, the run stops with ``RunCancelled`` after saving
            a checkpoint (submitting it again resumes).
        refresh: recompute and replace a stored run (the CLI's ``--no-cache``); drops its checkpoint.
        backend: "local" or "ray" (blocks of sample units computed on Ray workers).
        address: Ray cluster address (``ray.init(address=...)``); None starts or reuses a local Ray.
        checkpoint_interval: seconds between checkpoints (default 2, or ``$MSA_CHECKPOINT_INTERVAL``).
        resolved: an already resolved spec (internal: the job runner resolves once to dedupe).
        ray_options: extra options of :func:`~msa_core.runs.ray_backend.run_on_ray`
            (``tasks_per_block``, ``gpus_per_task``, ``max_in_flight``).

    Returns:
        The stored :class:`RunRecord`. ``record.params["cached"]`` says whether it was found in the
        store; ``params["resumed_from_unit"]`` and ``params["evaluations_this_session"]`` describe a resume.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; choose 'local' or 'ray'")
    store = store if store is not None else RunStore()
    resolved = resolved if resolved is not None else resolve(spec)
    spec = resolved.spec
    key = resolved.key
    if not refresh:
        found = store.get_exact(key)
        if found is not None:
            found.params["cached"] = True
            return found
    else:
        store.delete_checkpoint(key)

    game = resolved.game()
    n_players = int(game.n_players)
    estimator = make_estimator(spec.method)
    sampling = isinstance(estimator, SamplingEstimator)
    info = {"spec": spec.to_dict(), "key": key}
    checkpointer = _Checkpointer(store, key, _checkpoint_interval(checkpoint_interval), info)
    state: SamplingState | None = None
    resumed_from = 0
    resumed_evaluations = 0
    if sampling:
        loaded = store.load_checkpoint(key)
        if loaded is not None:
            state = SamplingState.from_state_dict(loaded[0], device=spec.device)
            resumed_from, resumed_evaluations = state.next_unit, state.n_evaluations
        else:
            state = SamplingState()
        checkpointer.state = state
    previous_elapsed = 0.0
    if resumed_from:
        previous_elapsed = float((loaded[1] or {}).get("elapsed_s", 0.0))  # type: ignore[index]

    started = time.perf_counter()
    info["elapsed_s"] = previous_elapsed
    def on_block(s: SamplingState) -> None:
        info["elapsed_s"] = previous_elapsed + time.perf_counter() - started
        checkpointer(s)

    try:
        if backend == "ray" and sampling:
            from .ray_backend import run_on_ray

            result = run_on_ray(
                resolved, game, estimator, state, address=address, progress=progress, cancel=cancel,
                on_block=on_block, **(ray_options or {}),
            )
        else:
            result = shapley_modes(
                game,
                n_players,
                method=spec.method,
                n_permutations=spec.n_permutations,
                batch_size=spec.batch_size,
                seed=spec.seed,
                device=spec.device,
                progress=progress,
                unit_labels=list(game.unit_labels),
                cancel=cancel,
                state=state,
                on_block=on_block if sampling else None,
            )
    except BaseException:
        if sampling:
            info["elapsed_s"] = previous_elapsed + time.perf_counter() - started
            checkpointer.save()  # cancelled, failed or interrupted: keep what was merged
        raise
    elapsed = previous_elapsed + time.perf_counter() - started
    result.elapsed_s = elapsed
    result.unit_labels = [str(label) for label in game.unit_labels]
    result.metadata.update(
        {
            "run_id": key,
            "model": spec.model,
            "units": _units_text(resolved.units),
            "objective": resolved.objective,
            "lesion": spec.lesion,
            "output_labels": _output_labels(resolved),
        }
    )
    if spec.inputs is not None:
        result.metadata["inputs"] = spec.inputs
    params = {
        "fingerprint": resolved.subject.fingerprint,
        "units": resolved.document["units"],
        "units_text": _units_text(resolved.units),
        "objective": resolved.objective,
        "objective_description": resolved.objective_description,
        "msa_core": resolved.document["msa_core"],
        "n_players": n_players,
        "output_shape": list(result.output_shape),
        "n_evaluations": int(result.n_evaluations),
        "n_samples": int(result.n_samples),
        "backend": backend,
        "device": spec.device,
        "batch_size": spec.batch_size,
        "resumed_from_unit": int(resumed_from),
        "evaluations_this_session": int(result.n_evaluations - resumed_evaluations),
        "checkpoints_saved": checkpointer.saves,
        "game_path": getattr(game, "path", None),
        "cached": False,
    }
    record = RunRecord(
        id=key, spec=spec, result=result, created=time.time(), elapsed_s=elapsed, label=spec.label, params=params
    )
    store.put(record)
    store.delete_checkpoint(key)
    return record


def _output_labels(resolved: ResolvedRun) -> list[str] | None:
    try:
        labels = resolved.subject.objective_labels(resolved.objective)
    except Exception:  # labels are cosmetic: never fail a finished run over them
        return None
    return None if labels is None else [str(label) for label in labels]


def plan(spec: RunSpec, resolved: ResolvedRun | None = None, game: Any = None) -> dict[str, Any]:
    """Evaluations a run will cost: ``{"n_players", "n_units", "evaluations"}`` (no game calls)."""
    resolved = resolved or resolve(spec)
    game = game if game is not None else resolved.game()
    n = int(game.n_players)
    estimator = make_estimator(spec.method)
    if isinstance(estimator, SamplingEstimator):
        units = estimator.n_units(n, spec.n_permutations)
        return {"n_players": n, "n_units": units, "evaluations": 2 + units * estimator.evaluations_per_unit(n)}
    return {"n_players": n, "n_units": 1, "evaluations": 2**n if n <= 62 else math.inf}
