"""The Ray backend: blocks of sample units computed on Ray workers, merged in order on the driver.

The driver computes ``v(empty)`` and ``v(N)`` once, cuts the sample units into exactly the blocks
that :meth:`SamplingEstimator.estimate` would merge (``units_per_block`` units from
``state.next_unit``), and sends each block to a worker as plain parameters: the spec (a dict), the
unit range, the two endpoint arrays and the run key. A worker rebuilds the subject from the spec with
``load_subject(spec.model, inputs=spec.inputs)`` (models are never pickled; the model and the inputs
file must exist at the same paths on every node: a shared filesystem or identical copies), checks
that it gets the driver's run key (same weights, same inputs content), evaluates the block's
coalitions and returns the block's :class:`~msa_core.accumulate.MomentAccumulator` as numpy arrays. The driver merges the blocks in unit
order, so the result equals a local run with the same seed bit for bit (given the same game values:
same device type and library versions on every worker), and checkpoints as the local loop does.

Tasks ask for one GPU each when the spec's device is CUDA (so Ray runs one task per GPU), else for
one CPU. Ray is imported only here: the default backend never needs it.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from typing import Any, Callable

import numpy as np
import torch

from ..accumulate import MomentAccumulator
from ..estimators import RunCancelled, SamplingEstimator, SamplingState, make_estimator
from ..estimators.base import GameRunner
from ..result import ShapleyResult
from .spec import RunSpec, resolve

__all__ = ["run_on_ray", "compute_block", "ensure_ray"]

_WORKER_CACHE: dict[str, Any] = {}


def compute_block(
    spec_dict: dict[str, Any],
    start: int,
    stop: int,
    empty: np.ndarray,
    intact: np.ndarray,
    raw: bool = False,
    key: str | None = None,
) -> tuple[Any, int, float]:
    """Worker side: ``(accumulator state_dict, evaluations, seconds)`` of sample units ``start:stop``;
    with ``raw=True`` the samples themselves (numpy ``(stop - start, n_players, *output_shape)``) instead
    of their accumulator, for a block split over several tasks.

    Rebuilds (and caches per worker process) the game from the spec, with its example inputs
    (``spec["inputs"]``: a file that must exist at the same path on the worker); runs anywhere, Ray or
    not. ``key``: the driver's run key; a worker whose model or inputs file differ from the driver's
    (another file at the same path) gets another key and raises ValueError instead of computing a
    different game.
    """
    began = time.perf_counter()
    spec = RunSpec.from_dict(spec_dict)
    cache_key = repr((sorted(spec.to_dict().items()), key))
    if cache_key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()  # one game per worker process at a time
        resolved = resolve(spec)
        if key is not None and resolved.key != key:
            what = f"the model {spec.model!r}" + (f" or the inputs file {spec.inputs!r}" if spec.inputs else "")
            raise ValueError(
                f"this worker's run key {resolved.key[:12]} differs from the driver's {key[:12]}: {what} is not the "
                "same here as on the driver (every node needs the same files at the same paths, and the same "
                "msa_core version)"
            )
        _WORKER_CACHE[cache_key] = resolved.game()
    game = _WORKER_CACHE[cache_key]
    estimator = make_estimator(spec.method)
    if not isinstance(estimator, SamplingEstimator):
        raise ValueError(f"method {spec.method!r} is not a sampling method; it cannot be split into blocks")
    runner = GameRunner(game, int(game.n_players), batch_size=spec.batch_size, device=spec.device)
    empty_t = torch.as_tensor(empty, device=runner.device)
    intact_t = torch.as_tensor(intact, device=runner.device)
    runner.output_shape = tuple(empty_t.shape)
    samples = estimator.unit_samples(runner, int(game.n_players), spec.seed, range(start, stop), empty_t, intact_t)
    if raw:
        return samples.cpu().numpy(), runner.n_evaluations, time.perf_counter() - began
    accumulator = MomentAccumulator.from_samples(samples)
    return accumulator.state_dict(), runner.n_evaluations, time.perf_counter() - began


def ensure_ray(address: str | None = None) -> Any:
    """Import Ray and connect: to ``address`` if given, else to a running Ray or a new local one."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'msa-explorer[ray]' (or 'ray[default]')") from None
    if not ray.is_initialized():
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = {"PYTHONPATH": path}
        for name in ("MSA_HOME", "MSA_ASSETS"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        try:
            ray.init(runtime_env={"env_vars": env}, **kwargs)
        except ConnectionError as error:
            raise ValueError(f"could not connect to the Ray cluster at {address!r}: {error}") from error
    return ray


def _split(units: range, parts: int) -> list[range]:
    parts = max(1, min(parts, len(units)))
    edges = [units.start + (len(units) * i) // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:])]


def run_on_ray(
    resolved: Any,
    game: Any,
    estimator: SamplingEstimator,
    state: SamplingState,
    *,
    address: str | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Any = None,
    on_block: Callable[[SamplingState], Any] | None = None,
    max_in_flight: int | None = None,
    tasks_per_block: int | None = None,
    gpus_per_task: float | None = None,
) -> ShapleyResult:
    """Compute the sampling run of ``resolved`` with blocks on Ray workers; merge in order on the driver.

    Each block is one task, or (when there are fewer blocks than worker slots, or ``tasks_per_block``
    says so) several tasks that return their raw samples, concatenated on the driver into the block's
    accumulator: either way the merge is that of the local loop. ``gpus_per_task`` (default 1, or
    ``$MSA_RAY_GPUS_PER_TASK``) is for models that need several GPUs per replica.
    """
    from .execute import block_ranges

    ray = ensure_ray(address)
    spec: RunSpec = resolved.spec
    n_players = int(game.n_players)
    total_units = estimator.n_units(n_players, spec.n_permutations)
    per_unit = estimator.evaluations_per_unit(n_players)
    total_evaluations = 2 + total_units * per_unit
    runner = GameRunner(game, n_players, batch_size=spec.batch_size, device=spec.device, progress=progress)
    runner.total = total_evaluations
    runner.n_evaluations = state.n_evaluations
    started = time.perf_counter()
    if state.empty is None or state.intact is None:
        state.empty, state.intact = runner.endpoints()
        state.n_evaluations = runner.n_evaluations
    empty = state.empty.to(runner.device, torch.float64)
    intact = state.intact.to(runner.device, torch.float64)
    blocks = block_ranges(estimator, n_players, math.prod(empty.shape), total_units, state.next_unit)

    use_gpu = spec.device.startswith("cuda")
    gpus = float(gpus_per_task or os.environ.get("MSA_RAY_GPUS_PER_TASK") or 1)
    resources = ray.cluster_resources()
    n_slots = int(resources.get("GPU", 0) // gpus) if use_gpu else int(resources.get("CPU", 1))
    if use_gpu and n_slots == 0:
        raise ValueError("device cuda was asked for but the Ray cluster has no (or too few) GPUs; use --device cpu")
    if tasks_per_block is None:
        env = os.environ.get("MSA_RAY_TASKS_PER_BLOCK")
        tasks_per_block = int(env) if env else max(1, math.ceil(n_slots / max(1, len(blocks))))
    remote = ray.remote(num_gpus=gpus if use_gpu else 0, num_cpus=0 if use_gpu else 1, max_retries=2)(compute_block)
    spec_dict = spec.to_dict()
    empty_np, intact_np = ray.put(empty.cpu().numpy()), ray.put(intact.cpu().numpy())
    window = max_in_flight or max(2, 2 * max(1, n_slots))
    tasks = deque((block, part) for block in blocks for part in _split(block, tasks_per_block))
    pending: deque[tuple[range, range, Any]] = deque()
    parts_done: list[np.ndarray] = []
    n_tasks = len(tasks)
    try:
        while tasks or pending:
            while tasks and len(pending) < window:
                block, part = tasks.popleft()
                raw = len(part) != len(block)
                ref = remote.remote(spec_dict, part.start, part.stop, empty_np, intact_np, raw, resolved.key)
                pending.append((block, part, ref))
            block, part, ref = pending[0]
            while True:  # wait for the oldest task, watching the cancel flag
                if cancel is not None and cancel.is_set():
                    raise RunCancelled("the run was cancelled")
                ready, _ = ray.wait([ref], timeout=0.25)
                if ready:
                    break
            pending.popleft()
            payload, evaluations, _seconds = ray.get(ref)
            runner.count(evaluations)
            if len(part) != len(block):
                parts_done.append(np.array(payload))
                if part.stop != block.stop:
                    continue
                samples = torch.from_numpy(np.concatenate(parts_done)).to(runner.device)
                parts_done = []
                accumulator = MomentAccumulator.from_samples(samples)
            else:
                payload = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in payload.items()}
                accumulator = MomentAccumulator.from_state_dict(payload, device=runner.device)
            state.accumulator.merge(accumulator)
            state.next_unit = block.stop
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
    finally:
        for _, _, ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # best effort: a finished task cannot be cancelled
                pass
    result = estimator.result_from_state(state, seed=spec.seed, elapsed_s=time.perf_counter() - started)
    result.metadata["ray"] = {"blocks": len(blocks), "tasks": n_tasks, "slots": n_slots, "gpu": use_gpu}
    return result
