"""The library entry points the app uses, imported in one place.

The app codes against the contracts of ``msa_core.models`` (subjects) and ``msa_core.runs`` (run
store and job runner). While a module is missing, this falls back to the runs package's stand-in
loader (``msa_core.runs.spec.load_subject``), so the app still opens on the built-in models.
"""

from __future__ import annotations

from typing import Any

try:  # the contract
    from msa_core.models import ModelLoadError, list_builtins, load_subject  # noqa: F401
except ImportError:  # pragma: no cover - only while msa_core.models is being written
    from msa_core.runs.spec import ModelLoadError, list_builtins, load_subject  # noqa: F401

from msa_core.runs import JobRunner, RunRecord, RunSpec, RunStore  # noqa: E402,F401

__all__ = ["ModelLoadError", "list_builtins", "load_subject", "JobRunner", "RunRecord", "RunSpec", "RunStore", "describe_units", "describe_run", "run_budget", "progress_text"]


def describe_units(units: Any) -> str:
    """Short text for a run's units (None: the model's defaults)."""
    if not units:
        return "default units"
    names = [getattr(u, "path", u) for u in units]
    return ", ".join(str(n) for n in names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")


def run_budget(spec: Any) -> str:
    """A run's budget as text: "exact", "N evaluations" or "N permutations"."""
    if spec.method == "exact":
        return "exact"
    budget = getattr(spec, "budget", None)
    if budget:
        return f"{int(budget):,} evaluations"
    return f"{int(spec.n_permutations):,} permutations"


def describe_run(record: Any) -> str:
    """One line naming a stored run: label (or method), budget, units, short id."""
    spec = record.spec
    name = record.label or spec.method
    return f"{name} · {run_budget(spec)} · {describe_units(spec.units)} · {record.id[:8]}"


def progress_text(status: Any) -> str:
    """The Run page's progress line of a :class:`~msa_core.runs.JobStatus`; before the run knows its size
    it says what it is doing, never "0 / 0 evaluations"; a job on the Ray backend says so ("running on Ray: ...")."""
    state = status.state + (" on Ray" if getattr(status, "backend", "local") == "ray" else "")
    if not status.total:
        return f"{state}: loading the model and planning the run..."
    eta = f"{status.eta_s:.0f} s left" if status.eta_s is not None else "estimating time left"
    rate = f" · {status.evals_per_s:,.0f} evaluations/s" if status.evals_per_s else ""
    return f"{state}: {status.done:,} / {status.total:,} evaluations{rate} · {eta}"
