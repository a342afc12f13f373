"""The Modes page's unit picker, bound to the ``unit=`` query parameter (the unit's index).

Up to :data:`msa_core.mode_views.SINGLE_PICKER_MAX_UNITS` units (``MSA_MODES_SINGLE_PICKER_MAX`` overrides it,
e.g. to measure the one-selectbox picker on a large run): one "Unit" selectbox of every unit. More: two
selectboxes, "Unit range" (ranges of :func:`msa_core.mode_views.unit_ranges`) and "Unit" (the units of that
range), because a browser re-renders a selectbox of thousands of options slowly on every change. Either way the
selected unit is ``st.session_state[key]`` (a click on a bar may set it before the picker is drawn) and the URL
holds only the unit: the range follows from it.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import streamlit as st

from msa_core import mode_views

from . import state


def single_picker_max() -> int:
    """Runs with at most this many units get the one-selectbox picker (``MSA_MODES_SINGLE_PICKER_MAX``, else
    :data:`msa_core.mode_views.SINGLE_PICKER_MAX_UNITS`)."""
    raw = os.environ.get("MSA_MODES_SINGLE_PICKER_MAX")
    return int(raw) if raw and raw.strip().isdigit() else mode_views.SINGLE_PICKER_MAX_UNITS


def unit_picker(units: Sequence[int], unit_labels: Sequence[str], totals: Any, default: int, *, ranked: bool,
                key: str = "modes_unit", param: str = "unit") -> int:
    """Draw the unit picker and return the selected unit's index.

    Args:
        units: every unit index, in the page's order (the options' order).
        unit_labels: every unit's label ``(n_units,)``. totals: every unit's total contribution ``(n_units,)``.
        default: the unit without a URL parameter (left out of the URL when selected).
        ranked: whether ``units`` is ordered by total (ranges of ranks) rather than by index (ranges of layers).
        key: the session-state key of the unit (the "Unit" selectbox). param: its query parameter.
    """
    def label(i: int) -> str:
        return f"{unit_labels[i]} (total {totals[i]:+.4g})"

    units = [int(u) for u in units]
    if len(units) <= single_picker_max():
        return state.url_widget(st.selectbox, "Unit", param, options=units, default=default, key=key,
                                format_func=label)
    ranges = mode_views.unit_ranges(units, unit_labels, ranked=ranked)
    range_of = {unit: k for k, (_, members) in enumerate(ranges) for unit in members}
    session = st.session_state
    if key not in session:  # first draw: the link's unit
        raw = state.url_value(param)
        session[key] = int(raw) if raw is not None and raw.strip().isdigit() else default
    if session.get(key) not in range_of:
        session[key] = default
    range_key = f"{key}_range"
    session[range_key] = range_of[session[key]]  # the unit decides the range (a bar click, a link, an order change)

    def range_moved() -> None:  # another range chosen: its first unit, so unit and range agree before the rerun
        session[key] = ranges[session[range_key]][1][0]

    left, right = st.columns([2, 3])
    left.selectbox("Unit range", list(range(len(ranges))), key=range_key, format_func=lambda k: ranges[k][0],
                   on_change=range_moved, help=f"{len(units):,} units: pick a range of them, then a unit of it.")
    unit = right.selectbox("Unit", ranges[session[range_key]][1], key=key, format_func=label)
    state.set_url_value(param, None if unit == default else str(unit))
    return int(unit)
