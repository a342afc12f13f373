"""Runs that persist: run keys, a diskcache store, checkpointed execution, background jobs, Ray.

::

    from msa_core.runs import RunSpec, RunStore, execute, JobRunner

    spec = RunSpec("mlp-digits", n_permutations=200, seed=0)
    record = execute(spec)             # computed once, then returned from the store at once
    record.result.values               # (n_units, *output_shape)

    runner = JobRunner(RunStore())     # background threads; no Streamlit
    job = runner.submit(spec)
    runner.status(job)                 # JobStatus(state, done, total, evals_per_s, eta_s, error, run_id)

    estimate_cost(spec)                # {"evaluations", "seconds_low", "seconds_high", ...}: timed on this game

    RunSpec("mlp-digits", preset="hidden layer", method="topk", budget=3000, options={"k": 3})

Every method in ``METHODS`` goes through the same path (library, ``execute``, ``JobRunner``, CLI, Ray);
Ray is imported only by the "ray" backend (:mod:`msa_core.runs.ray_backend`).
"""

from .cost import estimate_cost
from .execute import DEFAULT_CHECKPOINT_INTERVAL, execute, plan, run_estimator
from .jobs import JobRunner, JobStatus
from .spec import (
    ModelLoadError, ResolvedRun, RunSpec, list_builtins, load_subject, recipe_source_hash, resolve, run_key,
)
from .store import RunNotFound, RunRecord, RunStore, default_root

__all__ = [
    "RunSpec",
    "RunStore",
    "RunRecord",
    "RunNotFound",
    "JobRunner",
    "JobStatus",
    "execute",
    "plan",
    "resolve",
    "run_key",
    "ResolvedRun",
    "load_subject",
    "list_builtins",
    "ModelLoadError",
    "default_root",
    "run_estimator",
    "estimate_cost",
    "recipe_source_hash",
    "DEFAULT_CHECKPOINT_INTERVAL",
]
