"""Background jobs: runs computed on worker threads, with progress, ETA, cancel and de-duplication.

A :class:`JobRunner` is a process-level object (the app keeps one with ``st.cache_resource``, so it
survives page reloads and serves every browser session). ``submit(spec)`` resolves the spec to its run
key at once: a run already in the store gives a job that is done immediately, and a run that is
already queued or running gives back the same job id, so the same run asked twice is computed once.
Computation happens on a thread pool (torch releases the GIL during tensor work). This module never
imports Streamlit.

How a job computes (``max_memory``, ``backend``, ``address``, ``ray_options``: the arguments of
:func:`~msa_core.runs.execute.execute`) comes from the runner's defaults or from ``submit``; none of it is
part of the run key, so the same run asked with another bound is still the one job. A finished job's
status says where its result went (``on_disk``) and how the estimator kept within the bound (``memory``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..estimators import RunCancelled
from ..memory import parse_memory
from .execute import execute, plan
from .spec import ResolvedRun, RunSpec, resolve
from .store import RunStore

__all__ = ["JobRunner", "JobStatus"]

_RATE_WINDOW_S = 10.0


@dataclass
class JobStatus:
    """A job's state at one moment.

    Attributes:
        state: "queued", "running", "done", "failed" or "cancelled".
        done, total: game evaluations done and planned (a resumed run starts from its checkpoint); the
            total is known from submit on (an adaptive method's total is its cap).
        evals_per_s: recent evaluation rate (over the last ~10 s of this session), 0 before any.
        eta_s: estimated seconds left (None while unknown).
        error: one-line error message when failed.
        run_id: the run key (known from submit on).
        job_id, spec, label, submitted, started, finished, cached: extra details.
        max_memory: the job's memory bound in bytes (None: automatic, half the free memory when it starts).
        backend: "local" or "ray".
        on_disk: where the finished result went: True when its values stay in on-disk arrays (a streamed
            run whose accumulators did not fit), False in memory, None until the job is done.
        memory: how the estimator kept within the bound (``result.metadata["memory"]``: ``mode``
            "blocks", "stream", "memory" or "spill", ``on_disk``, ``estimate_bytes``...); None before
            done or where the method takes no bound.
    """

    state: str
    done: int = 0
    total: int = 0
    evals_per_s: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    run_id: str | None = None
    job_id: str = ""
    spec: RunSpec | None = None
    label: str = ""
    submitted: float = 0.0
    started: float | None = None
    finished: float | None = None
    cached: bool = False
    max_memory: int | None = None
    backend: str = "local"
    on_disk: bool | None = None
    memory: dict[str, Any] | None = None

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


@dataclass
class _Job:
    job_id: str
    spec: RunSpec
    key: str
    refresh: bool
    submitted: float
    state: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    cached: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # execute's max_memory, backend, address, ray_options
    on_disk: bool | None = None
    memory: dict[str, Any] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    samples: deque = field(default_factory=lambda: deque(maxlen=256))
    future: Future | None = None


class JobRunner:
    """Runs :class:`RunSpec` s in the background on a thread pool; see the module docstring.

    Args:
        store: the run store (default ``RunStore()``).
        max_workers: runs computed at once (default 1: one run uses all cores; others queue).
        backend, address: passed to :func:`~msa_core.runs.execute` ("local" or "ray").
        checkpoint_interval: seconds between checkpoints (None: the default, 2 s).
        max_memory: default memory bound of a job (bytes or "4GB"; None: automatic, half the free
            memory or ``$MSA_MAX_MEMORY``); ``submit`` may give another.
        ray_options: default ``ray_options`` of ``execute`` on the "ray" backend (``workers``,
            ``gpus_per_worker``, ``min_rows_per_task``, ``accumulate``, ``units_per_task``).

    Raises:
        ValueError: an unknown backend, a bad ``max_memory`` or bad ``ray_options`` (one line).
    """

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        max_workers: int = 1,
        backend: str = "local",
        address: str | None = None,
        checkpoint_interval: float | None = None,
        max_memory: int | str | None = None,
        ray_options: dict[str, Any] | None = None,
    ) -> None:
        self.store = store if store is not None else RunStore()
        self.backend = _check_backend(backend)
        self.address = address
        self.checkpoint_interval = checkpoint_interval
        self.max_memory = None if max_memory is None else parse_memory(max_memory)
        self.ray_options = _check_ray_options(ray_options, self.backend)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="msa-job")
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._active: dict[str, str] = {}  # run key -> job id while queued or running
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ submit
    def submit(self, spec: RunSpec, *, refresh: bool = False, max_memory: int | str | None = None,
               backend: str | None = None, address: str | None = None,
               ray_options: dict[str, Any] | None = None) -> str:
        """Start ``spec`` in the background and return its job id.

        Resolves the spec now (loads the subject, computes the run key and the planned evaluations, so a
        queued job already shows ``0 / total``), so a bad spec raises here (ValueError with one clear
        message). The same run already queued or running returns that job's id (whatever its bound or
        backend: they change how, not what, is computed); a run already stored returns a job that is
        done at once (unless ``refresh``).

        ``max_memory``, ``backend``, ``address``, ``ray_options``: as for :func:`~msa_core.runs.execute`;
        None takes the runner's default. A bad bound, Ray
        options on the "local" backend or an unknown Ray option raise ValueError here.
        """
        options = self._job_options(spec, max_memory, backend, address, ray_options)
        resolved = resolve(spec)
        with self._lock:
            existing = self._active.get(resolved.key)
            if existing is not None:
                return existing
            job = _Job(job_id=f"job-{next(self._ids)}-{resolved.key[:8]}", spec=resolved.spec,
                       key=resolved.key, refresh=refresh, submitted=time.time(), options=options)
            self._jobs[job.job_id] = job
            if not refresh:
                found = self.store.get_exact(resolved.key)
                if found is not None:
                    n = int(found.params.get("n_evaluations", 0))
                    job.state, job.done, job.total, job.cached = "done", n, n, True
                    job.on_disk, job.memory = _where(found)
                    job.started = job.finished = time.time()
                    return job.job_id
            job.total = int(plan(resolved.spec, resolved)["evaluations"])
            self._active[resolved.key] = job.job_id
            job.future = self._pool.submit(self._run, job, resolved)
            return job.job_id

    def _run(self, job: _Job, resolved: ResolvedRun) -> None:
        with self._lock:
            if job.cancel_event.is_set():
                job.state, job.finished = "cancelled", time.time()
                self._active.pop(job.key, None)
                return
            job.state, job.started = "running", time.time()

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            job.done, job.total = int(done), int(total)
            job.samples.append((now, int(done)))

        try:
            record = execute(
                job.spec, self.store, progress=progress, cancel=job.cancel_event, refresh=job.refresh,
                checkpoint_interval=self.checkpoint_interval, resolved=resolved, **job.options,
            )
            with self._lock:
                job.state = "done"
                job.cached = bool(record.params.get("cached"))
                job.on_disk, job.memory = _where(record)
                n = int(record.result.n_evaluations)
                job.done = n
                job.total = n  # an adaptive method may stop below its planned cap
        except RunCancelled:
            with self._lock:
                job.state = "cancelled"
        except Exception as error:  # reported in the status, never raised into the app
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            with self._lock:
                job.state = "failed"
                job.error = f"{type(error).__name__}: {message}" if message else type(error).__name__
        finally:
            with self._lock:
                job.finished = time.time()
                if self._active.get(job.key) == job.job_id:
                    del self._active[job.key]

    # ------------------------------------------------------------------ queries
    def status(self, job_id: str) -> JobStatus:
        """The job's current :class:`JobStatus`; KeyError for an unknown job id."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            rate = self._rate(job)
            eta = None
            if job.state == "done":
                eta = 0.0
            elif rate > 0 and job.total:
                eta = max(0.0, (job.total - job.done) / rate)
            return JobStatus(
                state=job.state, done=job.done, total=job.total, evals_per_s=rate, eta_s=eta, error=job.error,
                run_id=job.key, job_id=job.job_id, spec=job.spec, label=job.spec.label, submitted=job.submitted,
                started=job.started, finished=job.finished, cached=job.cached,
                max_memory=job.options.get("max_memory"), backend=job.options.get("backend", self.backend),
                on_disk=job.on_disk, memory=job.memory,
            )

    @staticmethod
    def _rate(job: _Job) -> float:
        if job.state != "running" or len(job.samples) < 2:
            if job.state == "done" and job.started and job.finished and job.finished > job.started and not job.cached:
                return job.done / (job.finished - job.started)
            return 0.0
        now_t, now_done = job.samples[-1]
        for t, done in job.samples:  # oldest sample within the window
            if now_t - t <= _RATE_WINDOW_S:
                break
        if now_t <= t:
            return 0.0
        return (now_done - done) / (now_t - t)

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop (its checkpoint is kept: submitting it again resumes). True if it was active."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return False
            job.cancel_event.set()
            if job.state == "queued" and job.future is not None and job.future.cancel():
                job.state, job.finished = "cancelled", time.time()
                self._active.pop(job.key, None)
            return True

    def jobs(self) -> list[JobStatus]:
        """Every job's status, oldest first."""
        with self._lock:
            ids = list(self._jobs)
        return [self.status(job_id) for job_id in ids]

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job is finished (or ``timeout`` seconds passed); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if not status.active or (deadline is not None and time.monotonic() >= deadline):
                return status
            time.sleep(0.05)

    def _job_options(self, spec: RunSpec, max_memory: Any, backend: str | None, address: str | None,
                     ray_options: dict[str, Any] | None) -> dict[str, Any]:
        """The keyword arguments of ``execute`` for one job: the given ones over the runner's, checked."""
        backend = _check_backend(backend or self.backend)
        bound = self.max_memory if max_memory is None else parse_memory(max_memory)
        chosen = _check_ray_options(ray_options if ray_options is not None else
                                    (self.ray_options if backend == "ray" else None), backend)
        options: dict[str, Any] = {"backend": backend, "max_memory": bound}
        if backend == "ray":
            options.update(address=address or self.address, ray_options=chosen)
        return options

    def plan(self, spec: RunSpec) -> dict[str, Any]:
        """Evaluations a run would cost (see :func:`msa_core.runs.execute.plan`)."""
        return plan(spec)

    def shutdown(self, cancel: bool = True) -> None:
        """Cancel active jobs (if asked) and stop the pool."""
        if cancel:
            for status in self.jobs():
                if status.active:
                    self.cancel(status.job_id)
        self._pool.shutdown(wait=True, cancel_futures=True)


_RAY_OPTIONS = ("workers", "gpus_per_worker", "min_rows_per_task", "accumulate", "units_per_task")


def _check_backend(backend: str) -> str:
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; choose 'local' or 'ray'")
    return backend


def _check_ray_options(options: dict[str, Any] | None, backend: str) -> dict[str, Any] | None:
    """``options`` (``execute``'s ``ray_options``) checked: known names, an accumulate mode, positive counts."""
    if not options:
        return None
    if backend != "ray":
        raise ValueError(f"ray_options are only used with backend 'ray'; got backend {backend!r}")
    unknown = sorted(set(options) - set(_RAY_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ray option {unknown[0]!r}; the options are {', '.join(_RAY_OPTIONS)}")
    from .ray_accumulate import ACCUMULATE_MODES

    mode = options.get("accumulate")
    if mode is not None and mode not in (*ACCUMULATE_MODES, "auto"):
        raise ValueError(f"ray accumulate must be one of {', '.join((*ACCUMULATE_MODES, 'auto'))}; got {mode!r}")
    for name in ("workers", "units_per_task", "min_rows_per_task"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"ray option {name} must be a positive integer; got {value!r}")
    return dict(options)


def _where(record: Any) -> tuple[bool, dict[str, Any] | None]:
    """``(on_disk, memory)`` of a stored run: whether its values are on-disk arrays, and its memory plan."""
    result = record.result
    memory = result.metadata.get("memory")
    return bool(getattr(result, "on_disk", False)), dict(memory) if isinstance(memory, dict) else None
