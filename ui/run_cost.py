"""The Run page's cost estimate: the run's own plan and a probe that times real batches of its game
(:func:`msa_core.runs.estimate_cost`), cached per run spec so a rerun of the page does not probe again."""

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
def run_cost(spec: Any, probe_seconds: float = 1.0) -> dict[str, Any]:
    """``{"n_players", "n_units", "evaluations", "seconds_low", "seconds_high", "evaluations_per_second",
    "complete"}`` of a :class:`~msa_core.runs.RunSpec` on this machine (the model comes from the app's
    cache)."""
    from msa_core.runs import estimate_cost, plan, resolve

    resolved = resolve(spec, subject=resources.subject(spec.model, spec.inputs, spec.tasks))
    planned = plan(spec, resolved)
    return {**planned, **estimate_cost(resolved, probe_seconds=probe_seconds)}
