"""The Run page's cost estimate: the run's own plan and a probe that times real batches of its game
(:func:`msa_core.runs.estimate_cost`), cached per run spec and memory bound so a rerun of the page does not
probe again; and the page's memory bound (:func:`memory_bound`, :func:`automatic_bound_text`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import resources


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def run_plan(spec: Any) -> dict[str, int]:
    """``{"n_players", "n_units", "evaluations"}`` of a run spec, from its estimator's plan (no game calls)."""
    from msa_core.runs import plan, resolve

    return plan(spec, resolve(spec, subject=resources.subject(spec.model, spec.inputs, spec.tasks)))


@st.cache_data(show_spinner="Timing a few batches of this run...", max_entries=64, ttl=3600)
def run_cost(spec: Any, probe_seconds: float = 1.0, max_memory: int | None = None) -> dict[str, Any]:
    """``{"n_players", "n_units", "evaluations", "seconds_low", "seconds_high", "evaluations_per_second",
    "complete", "memory"}`` of a :class:`~msa_core.runs.RunSpec` on this machine under ``max_memory``
    (bytes; None: automatic), the probe run under that bound; ``memory`` is
    :func:`msa_core.runs.cost.memory_outlook` (seconds None where the bound is refused). The model comes
    from the app's cache."""
    from msa_core.runs import estimate_cost, plan, resolve

    resolved = resolve(spec, subject=resources.subject(spec.model, spec.inputs, spec.tasks))
    planned = plan(spec, resolved)
    return {**planned, **estimate_cost(resolved, probe_seconds=probe_seconds, max_memory=max_memory)}


def memory_bound(text: str | None) -> tuple[int | None, str | None]:
    """The Run page's "Memory bound" text as ``(bytes, error)``: empty is automatic ``(None, None)``; a
    size such as "4GB", "512MB" or a number of bytes is ``(bytes, None)``; anything else ``(None, one line)``."""
    from msa_core.memory import parse_memory

    if text is None or not text.strip():
        return None, None
    try:
        return parse_memory(text.strip()), None
    except ValueError as error:
        return None, f"Memory bound {text.strip()!r}: {_reason(str(error))}"


def _reason(message: str) -> str:
    if "at least 1 MB" in message:
        return "it must be at least 1 MB."
    return "not a size; write e.g. 4GB, 512MB or 2.5G (empty: automatic)."


def automatic_bound_text() -> str:
    """What an empty bound means now: "automatic: 10.9 GB (half the free memory now)", or the figure of
    ``$MSA_MAX_MEMORY`` where it is set."""
    import os

    from msa_core.memory import DEFAULT_FRACTION, format_bytes, resolve_max_memory

    try:
        figure = format_bytes(resolve_max_memory(None))
    except ValueError as error:  # a bad $MSA_MAX_MEMORY: say so rather than fail
        return f"automatic: $MSA_MAX_MEMORY is not usable ({error})"
    if os.environ.get("MSA_MAX_MEMORY"):
        return f"automatic: {figure} ($MSA_MAX_MEMORY)"
    return f"automatic: {figure} ({DEFAULT_FRACTION:.0%} of the free memory now)"
