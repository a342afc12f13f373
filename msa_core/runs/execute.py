"""Running a :class:`RunSpec`: cached, checkpointed, resumable, locally or on Ray; one path for every method.

``execute(spec)`` resolves the spec to its run key, returns the stored run if there is one, and
otherwise computes it with :func:`msa_core.shapley_modes` (through :func:`run_estimator`, the one call
from a resolved run to the estimators), saving the estimator's :class:`SamplingState` into the store at
most every ``checkpoint_interval`` seconds (and when it stops: cancelled, failed or done). Every method
in ``METHODS`` (exact, sampling, adaptive) takes a state and reports blocks, so a run that was killed
resumes from its checkpoint and finishes with the values of an uninterrupted run. On the "ray" backend
the same estimator runs on the driver and only the game's evaluations go to Ray workers
(:class:`~msa_core.runs.ray_backend.RayGame`).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..estimators import SamplingState, make_estimator, shapley_modes
from ..result import ShapleyResult
from .spec import ResolvedRun, RunSpec, budget_evaluations, resolve
from .store import RunRecord, RunStore

__all__ = ["execute", "plan", "run_estimator", "DEFAULT_CHECKPOINT_INTERVAL"]

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


def _budget(spec: RunSpec, budget: int | None = None) -> dict[str, int]:
    """The budget keyword of ``shapley_modes``: ``budget`` or the spec's evaluations when given, else permutations."""
    if budget is not None:
        return {"budget": int(budget)}
    return {"budget": int(spec.budget)} if spec.budget is not None else {"n_permutations": int(spec.n_permutations)}


def run_estimator(
    resolved: ResolvedRun,
    game: Any,
    *,
    progress: ProgressCallback | None = None,
    cancel: Any = None,
    state: SamplingState | None = None,
    on_block: Callable[[SamplingState], Any] | None = None,
    spec_batch_size: bool = True,
    max_memory: int | str | None = None,
    scratch_dir: Any = None,
    budget: int | None = None,
) -> ShapleyResult:
    """``shapley_modes`` on ``game`` with the spec's method, budget, options and seed: the one estimator
    call of the run machinery (``execute``, the Ray backend and :func:`estimate_cost` all use it).

    ``spec_batch_size=False`` lets the game choose its rows per call (the Ray backend: one batch per
    worker); values do not depend on the batch size. ``budget`` (evaluations) replaces the spec's: a
    Ray worker runs units ``[a, b)`` as a state resumed at ``a`` with the budget that buys ``b`` units.
    Returns the :class:`ShapleyResult` (``values`` ``(n_players, *output_shape)``).
    """
    spec = resolved.spec
    return shapley_modes(
        game,
        int(game.n_players),
        method=spec.method,
        **_budget(spec, budget),
        batch_size=spec.batch_size if spec_batch_size else None,
        seed=spec.seed,
        device=spec.device,
        progress=progress,
        unit_labels=list(game.unit_labels) if getattr(game, "unit_labels", None) else None,
        cancel=cancel,
        state=state,
        on_block=on_block,
        estimator_options=spec.options_dict,
        max_memory=max_memory,
        scratch_dir=scratch_dir,
    )


class _Checkpointer:
    """``on_block`` hook: saves the estimator's state at most every ``interval`` seconds."""

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
        if state is None or int(getattr(state, "n_evaluations", 0) or 0) <= 2:
            return  # nothing beyond the endpoints: a checkpoint would save no work
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
    max_memory: int | str | None = None,
) -> RunRecord:
    """Compute (or fetch) the run described by ``spec``; synchronous.

    Args:
        spec: the run's parameters.
        store: where runs and checkpoints live (default ``RunStore()``).
        progress: ``progress(done, total)`` in game evaluations; the first call comes before the first
            evaluation, with the planned total (never ``0 / 0``).
        cancel: object with ``is_set()``; when set, the run stops with ``RunCancelled`` after saving
            a checkpoint (submitting it again resumes).
        refresh: recompute and replace a stored run (the CLI's ``--no-cache``); drops its checkpoint.
        backend: "local" or "ray" (the game's evaluations computed on Ray workers).
        address: Ray cluster address (``ray.init(address=...)``); None starts or reuses a local Ray.
        checkpoint_interval: seconds between checkpoints (default 2, or ``$MSA_CHECKPOINT_INTERVAL``).
        resolved: an already resolved spec (internal: the job runner resolves once to dedupe).
        ray_options: options of :class:`~msa_core.runs.ray_backend.RayGame` (``workers``,
            ``gpus_per_worker``, ``min_rows_per_task``), plus ``accumulate`` ("workers", "driver" or
            "auto", else ``$MSA_RAY_ACCUMULATE``; see :func:`~msa_core.runs.ray_accumulate.choose_accumulate`)
            and ``units_per_task`` (sample units per worker per round in the "workers" mode).
        max_memory: bound on the estimator's working arrays (bytes or "4GB"; None: half the free
            memory). Not part of the run key: it changes how, not what, is computed. A result too
            large for memory is stored as on-disk arrays (``store.scratch_dir()``, then ``arrays/<id>``).

    Returns:
        The stored :class:`RunRecord`. ``record.params["cached"]`` says whether it was found in the
        store; ``params["resumed_evaluations"]`` and ``params["evaluations_this_session"]`` describe a resume.
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
    planned = plan(spec, resolved, game)
    info = {"spec": spec.to_dict(), "key": key}
    checkpointer = _Checkpointer(store, key, _checkpoint_interval(checkpoint_interval), info)
    loaded = store.load_checkpoint(key)
    try:
        state = SamplingState.from_state_dict(loaded[0], device=spec.device) if loaded is not None else SamplingState()
    except ValueError:  # its on-disk accumulator was interrupted mid-sample: start over
        loaded, state = None, SamplingState()
    resumed_evaluations = int(state.n_evaluations) if loaded is not None else 0
    resumed_from = int(getattr(state, "next_unit", 0) or 0) if loaded is not None else 0
    checkpointer.state = state
    previous_elapsed = float((loaded[1] or {}).get("elapsed_s", 0.0)) if loaded is not None else 0.0
    total = int(planned["evaluations"])

    def report(done: int, reported_total: int) -> None:
        if progress is not None:
            progress(int(done), max(int(reported_total), total, int(done)))

    report(resumed_evaluations, total)  # before the first evaluation: the total is known
    started = time.perf_counter()
    info["elapsed_s"] = previous_elapsed

    def on_block(s: SamplingState) -> None:
        info["elapsed_s"] = previous_elapsed + time.perf_counter() - started
        checkpointer(s)

    evaluated, accumulate = game, None
    if backend == "ray":
        from .ray_backend import RayGame

        options = dict(ray_options or {})
        accumulate = (options.pop("accumulate", None), options.pop("units_per_task", None))
        evaluated = RayGame(resolved, game, address=address, cancel=cancel, **options)
    try:
        if backend == "ray":
            recorded = (loaded[1] or {}).get("ray_accumulate") if loaded is not None else None
            accumulate, parts_dir = _ray_accumulate(resolved, evaluated, state, accumulate, report, max_memory,
                                                    store.scratch_dir(), recorded)
            info["ray_accumulate"] = {k: accumulate[k] for k in ("mode", "units_per_task", "on_disk")}
        if accumulate is not None and accumulate["mode"] == "workers":
            from .ray_accumulate import run_on_workers

            result = run_on_workers(resolved, evaluated, state, units_per_task=accumulate["units_per_task"],
                                    progress=report, on_block=on_block, max_memory=max_memory, parts_dir=parts_dir,
                                    scratch_dir=store.scratch_dir())
        else:
            result = run_estimator(resolved, evaluated, progress=report, cancel=cancel, state=state,
                                   on_block=on_block, spec_batch_size=backend != "ray", max_memory=max_memory,
                                   scratch_dir=store.scratch_dir())
    except BaseException:
        info["elapsed_s"] = previous_elapsed + time.perf_counter() - started
        checkpointer.save()  # cancelled, failed or interrupted: keep what was merged
        raise
    elapsed = previous_elapsed + time.perf_counter() - started
    result.elapsed_s = elapsed
    result.unit_labels = [str(label) for label in game.unit_labels]
    if backend == "ray":
        result.metadata["ray"] = {**evaluated.info(), "accumulate": accumulate}
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
    for name in ("inputs", "preset", "tasks"):
        if getattr(spec, name) is not None:
            result.metadata[name] = getattr(spec, name)
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
        "planned_evaluations": total,
        "n_samples": int(result.n_samples),
        "backend": backend,
        "device": spec.device,
        "batch_size": spec.batch_size,
        "resumed_from_unit": resumed_from,
        "resumed_evaluations": resumed_evaluations,
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


def _ray_accumulate(resolved: ResolvedRun, ray_game: Any, state: SamplingState, requested: tuple, report: Any,
                    max_memory: Any, scratch_dir: Any, recorded: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """Where a Ray run accumulates (:func:`~msa_core.runs.ray_accumulate.choose_accumulate`):
    ``({"mode", "reason", "units_per_task", "on_disk"}, parts_dir)``. A sampling run's endpoints are
    evaluated first (through ``begin_run``, into ``state``): the choice depends on the output size.
    ``recorded`` is the resumed checkpoint's choice (its units per task are kept). On disk,
    ``parts_dir`` is the folder the workers write to (:func:`~msa_core.runs.ray_disk.parts_folder`),
    checked to be visible on every worker: an explicit "workers" raises ValueError where it is not,
    the default falls back to "driver"."""
    from ..accumulate import DiskMoments
    from ..estimators import GameRunner, SamplingEstimator
    from ..estimators.base import begin_run
    from .ray_accumulate import choose_accumulate
    from .ray_disk import parts_folder, remove_parts, visibility_problem

    spec = resolved.spec
    n = int(ray_game.n_players)
    if not isinstance(make_estimator(spec.method, **spec.options_dict), SamplingEstimator):
        return choose_accumulate(requested[0], spec, n, 0, len(ray_game.workers), max_memory), None
    if state.empty is None or state.intact is None:
        runner = GameRunner(ray_game, n, device=spec.device, progress=report, cancel=ray_game.cancel)
        begin_run(runner, state, int(plan(spec, resolved, ray_game)["evaluations"]))
    was_workers = recorded is not None and recorded.get("mode") == "workers" and state.next_unit > 0
    accumulate = choose_accumulate(requested[0], spec, n, int(state.empty.numel()), len(ray_game.workers), max_memory,
                                   requested[1], recorded=recorded.get("units_per_task") if was_workers else None)
    if accumulate["mode"] != "workers":
        return accumulate, None
    if isinstance(state.accumulator, DiskMoments):  # a resumed checkpoint's moments are on disk: they stay there
        accumulate["on_disk"] = True
    if not accumulate["on_disk"]:
        return accumulate, None
    folder = parts_folder(scratch_dir, resolved.key)
    problem = visibility_problem(ray_game, folder)
    if problem is None:
        return accumulate, folder
    remove_parts(folder)
    if (requested[0] or os.environ.get("MSA_RAY_ACCUMULATE")) == "workers":
        raise ValueError(f"{problem}; or run with ray_options={{'accumulate': 'driver'}}")
    return {**accumulate, "mode": "driver", "on_disk": False, "reason": problem}, None


def _output_labels(resolved: ResolvedRun) -> list[str] | None:
    try:
        labels = resolved.subject.objective_labels(resolved.objective)
    except Exception:  # labels are cosmetic: never fail a finished run over them
        return None
    return None if labels is None else [str(label) for label in labels]


def plan(spec: RunSpec, resolved: ResolvedRun | None = None, game: Any = None) -> dict[str, Any]:
    """Evaluations a run will cost, from the estimator's own ``plan`` (no game calls).

    Returns ``{"n_players", "n_units", "evaluations"}``; for an adaptive method ``evaluations`` is its cap.
    """
    resolved = resolved or resolve(spec)
    game = game if game is not None else resolved.game()
    n = int(game.n_players)
    estimator = make_estimator(spec.method, **spec.options_dict)
    planned = estimator.plan(n, budget_evaluations(spec, n))
    return {"n_players": n, "n_units": int(planned["n_units"]), "evaluations": int(planned["evaluations"])}
