"""The Ray backend: the game's evaluations spread over Ray workers, the estimator unchanged on the driver.

:class:`RayGame` stands in for the run's game. The estimator (any method in ``METHODS``, exact,
sampling or adaptive) runs on the driver exactly as it does locally and calls the game with its
coalition matrices (or join orders, for games with ``evaluate_permutations``); ``RayGame`` cuts each
call's rows into parts, sends them to worker actors and concatenates the values in row order. A worker
(:class:`GameWorker`) gets plain parameters only (the :class:`RunSpec` as a dict, the run key and the
rows as a numpy array), rebuilds the subject with ``load_subject(spec.model, inputs=spec.inputs,
tasks=spec.tasks)`` once (models are never pickled; the model, the inputs file and the task battery
must exist at the same paths on every node), checks that it computes the driver's run key (same
weights, inputs, recipe source and ``msa_core`` version) and evaluates the rows. The values of a row do
not depend on the other rows of its batch, so a Ray run gives the values of a local run with the same
seed (given the same device type and library versions on every worker); checkpoints, resume and cancel
are those of the local path.

For sampling methods on games with large outputs, :mod:`msa_core.runs.ray_accumulate` uses the same
workers (:meth:`GameWorker.accumulate`, the same :func:`worker_game`) to run the estimator on ranges of
sample units and return moment accumulators instead of values (``ray_options={"accumulate": ...}``), or,
where those do not fit a worker's memory bound, the path of on-disk moments in a folder the driver sees
(:mod:`msa_core.runs.ray_disk`, :meth:`GameWorker.probe`).

Workers ask for one GPU each when the spec's device is CUDA, else for one CPU. Ray is imported only
here and there: the default backend never needs it.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch

from .spec import RunSpec, load_subject, recipe_source_hash, resolve

__all__ = ["RayGame", "GameWorker", "evaluate_rows", "worker_game", "ensure_ray"]

_GAME_FIELDS = ("model", "inputs", "tasks", "device", "units", "preset", "objective", "lesion", "batch_size")
_WORKER_SUBJECTS: dict[tuple, Any] = {}
_WORKER_GAMES: dict[tuple, Any] = {}
_WORKER_KEYS: dict[str, tuple] = {}


def worker_game(spec_dict: dict[str, Any], key: str | None) -> tuple[Any, Any]:
    """Worker side: ``(resolved, game)`` of the run, rebuilt from the spec once per worker process.

    A worker that computes another run key than the driver's ``key`` (a different model, inputs
    file, task battery or recipe at the same path, another ``msa_core``) raises ValueError instead of
    computing a different game. The subject, the resolved run and the game are kept between calls.
    """
    spec = RunSpec.from_dict(spec_dict)
    game_id = tuple(repr(spec_dict.get(name)) for name in _GAME_FIELDS)
    if key is None or _WORKER_KEYS.get(key) != game_id:
        subject_id = (*game_id[:4], recipe_source_hash(spec.model))  # an edited recipe is loaded again
        if subject_id not in _WORKER_SUBJECTS:
            _WORKER_SUBJECTS.clear()  # one subject per worker process at a time
            _WORKER_GAMES.clear()
            _WORKER_SUBJECTS[subject_id] = load_subject(spec.model, inputs=spec.inputs, device=spec.device, tasks=spec.tasks)
        resolved = resolve(spec, _WORKER_SUBJECTS[subject_id])
        if key is not None and resolved.key != key:
            what = f"the model {spec.model!r}" + (f" or the inputs file {spec.inputs!r}" if spec.inputs else "")
            what += f" or the tasks file {spec.tasks!r}" if spec.tasks else ""
            raise ValueError(
                f"this worker's run key {resolved.key[:12]} differs from the driver's {key[:12]}: {what} is not the "
                "same here as on the driver (every node needs the same files at the same paths, and the same "
                "msa_core version)"
            )
        if game_id not in _WORKER_GAMES:
            _WORKER_GAMES[game_id] = (resolved, resolved.game())
        if key is not None:
            _WORKER_KEYS[key] = game_id
    return _WORKER_GAMES[game_id]


def evaluate_rows(spec_dict: dict[str, Any], key: str | None, kind: str, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Worker side: the game's values on ``rows``; runs anywhere, Ray or not.

    Args:
        spec_dict: ``RunSpec.to_dict()`` of the run.
        key: the driver's run key (checked by :func:`worker_game`).
        kind: "coalitions" (``rows`` bool ``(batch, n_players)``) or "permutations" (``rows`` int64
            ``(m, n_players)``, through the game's ``evaluate_permutations``).
        rows: the coalitions or join orders.

    Returns:
        ``(values, seconds)``: numpy ``(batch, *output_shape)`` (``(m, n_players + 1, ...)`` for join
        orders) in the game's dtype, and the time spent.
    """
    began = time.perf_counter()
    _resolved, game = worker_game(spec_dict, key)
    tensor = torch.from_numpy(np.ascontiguousarray(rows))
    with torch.no_grad():
        values = game.evaluate_permutations(tensor) if kind == "permutations" else game(tensor)
    return values.detach().cpu().numpy(), time.perf_counter() - began


class GameWorker:
    """A Ray actor body holding one game (rebuilt from the spec) between calls; see :func:`evaluate_rows`."""

    def evaluate(self, spec_dict: dict[str, Any], key: str | None, kind: str, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """:func:`evaluate_rows` in this worker process."""
        return evaluate_rows(spec_dict, key, kind, rows)

    def accumulate(self, spec_dict: dict[str, Any], key: str | None, start: int, stop: int, empty: np.ndarray,
                   intact: np.ndarray, max_memory: int | None, parts_dir: str | None = None) -> dict[str, Any]:
        """:func:`~msa_core.runs.ray_accumulate.accumulate_units` in this worker process."""
        from .ray_accumulate import accumulate_units

        return accumulate_units(spec_dict, key, start, stop, empty, intact, max_memory, parts_dir)

    def probe(self, folder: str) -> tuple[str | None, str]:
        """``(token, host)``: the driver's marker in ``folder`` as this worker sees it (None: not visible)."""
        import socket

        from .ray_disk import read_marker

        return read_marker(folder), socket.gethostname()


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


_POOLS: dict[tuple, list[Any]] = {}


def _worker_pool(ray: Any, use_gpu: bool, gpus: float, n_workers: int) -> list[Any]:
    """Actors kept for the life of the Ray session (a worker keeps its model between runs). One pool at a
    time: a pool of another size or kind is killed first, so its actors free their CPUs or GPUs (two
    pools competing for the same slots would wait for each other forever)."""
    context = ray.get_runtime_context()
    session = (context.get_node_id(), context.get_job_id())  # a new Ray (even with the same job id): new actors
    pool_id = (session, use_gpu, gpus, n_workers)
    for stale in [k for k in _POOLS if k != pool_id]:
        for actor in _POOLS.pop(stale):
            if stale[0] == session:
                try:
                    ray.kill(actor)
                except Exception:  # best effort: an actor that is already gone
                    pass
    if pool_id not in _POOLS:
        actor = ray.remote(num_gpus=gpus if use_gpu else 0, num_cpus=0 if use_gpu else 1,
                           max_restarts=2, max_task_retries=2)(GameWorker)
        _POOLS[pool_id] = [actor.remote() for _ in range(n_workers)]
    return _POOLS[pool_id]


class RayGame:
    """The run's game, evaluated on Ray workers: a drop-in for the local game in any estimator.

    Args:
        resolved: the :class:`~msa_core.runs.spec.ResolvedRun` (spec and run key).
        game: the driver's own game (only its attributes are used: ``n_players``, ``unit_labels``,
            whether it has ``evaluate_permutations``).
        address: Ray cluster address (None: a running or new local Ray).
        cancel: object with ``is_set()``, watched while waiting for workers.
        workers: actors to use (default: one per GPU for a CUDA spec, else one per CPU of the cluster;
            ``$MSA_RAY_WORKERS`` overrides).
        gpus_per_worker: GPUs per actor (default 1, or ``$MSA_RAY_GPUS_PER_TASK``).
        min_rows_per_task: a call is split into parts of at least this many rows.
    """

    def __init__(self, resolved: Any, game: Any, *, address: str | None = None, cancel: Any = None,
                 workers: int | None = None, gpus_per_worker: float | None = None, min_rows_per_task: int = 16) -> None:
        self.ray = ensure_ray(address)
        spec: RunSpec = resolved.spec
        self.spec_dict, self.key, self.cancel = spec.to_dict(), resolved.key, cancel
        self.n_players = int(game.n_players)
        self.unit_labels = list(getattr(game, "unit_labels", []) or [])
        self.path = getattr(game, "path", None)
        if not callable(getattr(game, "evaluate_permutations", None)):
            self.evaluate_permutations = None  # estimators probe for it: absent here when absent locally
        use_gpu = spec.device.startswith("cuda")
        gpus = float(gpus_per_worker or os.environ.get("MSA_RAY_GPUS_PER_TASK") or 1)
        resources = self.ray.cluster_resources()
        slots = int(resources.get("GPU", 0) // gpus) if use_gpu else int(resources.get("CPU", 1))
        if use_gpu and slots == 0:
            raise ValueError("device cuda was asked for but the Ray cluster has no (or too few) GPUs; use --device cpu")
        workers = workers or int(os.environ.get("MSA_RAY_WORKERS") or 0) or max(1, slots)
        self.workers = _worker_pool(self.ray, use_gpu, gpus, workers)
        self.min_rows = max(1, int(min_rows_per_task))
        self.per_task_rows = spec.batch_size or getattr(game, "preferred_batch_size", None) or 1024
        self.calls = self.tasks = self.bytes_returned = 0
        self.gpu = use_gpu

    @property
    def preferred_batch_size(self) -> int:
        """Rows per call: one batch per worker, so a call keeps every worker busy."""
        return int(self.per_task_rows) * len(self.workers)

    def _run(self, kind: str, rows: np.ndarray) -> torch.Tensor:
        n_parts = max(1, min(len(self.workers), math.ceil(len(rows) / self.min_rows)))
        edges = [len(rows) * i // n_parts for i in range(n_parts + 1)]
        refs = [
            self.workers[i].evaluate.remote(self.spec_dict, self.key, kind, rows[a:b])
            for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))
        ]
        self.calls += 1
        parts = [np.asarray(values) for values, _seconds in self.wait(refs)]
        return torch.from_numpy(np.concatenate(parts))

    def wait(self, refs: list[Any]) -> list[Any]:
        """The results of worker tasks ``refs``, in order, watching the cancel flag while they run;
        counts the tasks and the bytes of the arrays they return (``info()["bytes_returned"]``)."""
        self.tasks += len(refs)
        try:
            while True:  # wait for all parts, watching the cancel flag
                if self.cancel is not None and self.cancel.is_set():
                    from ..estimators import RunCancelled

                    raise RunCancelled("the run was cancelled")
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0.25)
                if len(ready) == len(refs):
                    break
        except BaseException:
            for ref in refs:
                try:
                    self.ray.cancel(ref)
                except Exception:  # best effort: a finished task cannot be cancelled
                    pass
            raise
        results = self.ray.get(refs)
        self.bytes_returned += sum(_array_bytes(result) for result in results)
        return results

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Values ``(batch, *output_shape)`` of bool coalitions ``(batch, n_players)``, computed on workers."""
        return self._run("coalitions", coalitions.detach().cpu().numpy())

    def evaluate_permutations(self, permutations: torch.Tensor) -> torch.Tensor:  # type: ignore[no-redef]
        """Values along join orders ``(m, n_players + 1, *output_shape)``, computed on workers."""
        return self._run("permutations", permutations.detach().cpu().numpy().astype(np.int64))

    def info(self) -> dict[str, Any]:
        """What the run did on Ray: calls, tasks, workers, GPU, bytes of arrays returned to the driver."""
        return {"calls": self.calls, "tasks": self.tasks, "workers": len(self.workers), "gpu": self.gpu,
                "bytes_returned": int(self.bytes_returned)}


def _array_bytes(value: Any) -> int:
    """Bytes of the numpy arrays in a worker's result (tuples, lists and dicts walked)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_bytes(item) for item in value)
    return 0
