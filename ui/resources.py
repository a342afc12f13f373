"""Resources held across reruns and sessions with ``st.cache_resource``: subjects (models), the run
store, the job runner, editors; and small cached look-ups on top of them."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import streamlit as st

from msa_core.editor import LesionEditor, measure_throughput

from . import backend


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def subject(ref: str, inputs: str | None = None, tasks: str | None = None) -> Any:
    """The :class:`~msa_core.models.Subject` for a model reference, optional example-inputs file and optional
    task-battery file (its default objective then ``"tasks"``), loaded once per server.

    ``tasks`` comes from the URL too, so only a battery under the uploads folder or ``assets/tasks`` is read
    (:func:`battery_file`).

    Untrusted: the reference comes from a browser (a text box, the URL), so recipes run only where the
    server's operator allowed them (``MSA_RECIPE_DIRS``, ``MSA_RECIPE_MODULES``; :mod:`msa_core.models.policy`).
    """
    if tasks:
        return backend.load_subject(ref, inputs=inputs or None, trusted=False, tasks=battery_file(tasks))
    return backend.load_subject(ref, inputs=inputs or None, trusted=False)


def uploads_dir() -> Path:
    """Where uploaded models, inputs and edited task batteries are kept (``$MSA_HOME/uploads``)."""
    return Path(os.environ.get("MSA_HOME") or Path.home() / ".cache" / "msa") / "uploads"


def shipped_batteries() -> list[Path]:
    """The task batteries shipped in ``assets/tasks`` (YAML files), sorted by name."""
    from msa_core.zoo import assets_dir

    return sorted((assets_dir() / "tasks").glob("*.yaml"))


def battery_file(path: str) -> str:
    """``path`` resolved, when it is a battery file the app may read: under the uploads folder or
    ``assets/tasks``; else a one-line ValueError (a link must not make the server read other files)."""
    from msa_core.zoo import assets_dir

    resolved = Path(path).expanduser().resolve()
    allowed = [uploads_dir().resolve(), (assets_dir() / "tasks").resolve()]
    if not any(resolved.is_relative_to(folder) for folder in allowed) or not resolved.is_file():
        raise ValueError(f"task battery {Path(path).name!r} is not an uploaded or shipped battery file; "
                         "attach one on the Model page")
    return str(resolved)


def save_battery(battery: Any) -> str:
    """Keep a :class:`~msa_core.tasks.TaskBattery` (e.g. edited in the Model page's table) as a
    content-addressed YAML file under the uploads folder; its path (what the URL holds)."""
    return save_upload("battery.yaml", battery.to_yaml().encode("utf-8"))


@st.cache_resource(show_spinner="Preparing the task battery...", max_entries=6)
def tasks_game(ref: str, units: tuple, lesion: str | None, inputs: str | None, tasks: str) -> Any:
    """The ``"tasks"`` game of ``ref`` with battery ``tasks`` for these units (the Editor's per-task scores)."""
    return subject(ref, inputs, tasks).game(units=list(units) if units else None, objective="tasks", lesion=lesion)


def save_upload(name: str, data: bytes) -> str:
    """Keep an uploaded file under ``$MSA_HOME/uploads`` (content-addressed name); its path.

    The browser's file name keeps only letters, digits, ``.``, ``_`` and ``-`` (no directories, no ``:`` that
    would read as a recipe, no leading dot), so the file always lands inside the uploads folder.
    """
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    base = Path(str(name).replace("\\", "/")).name
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[-80:] or "upload"
    target = folder / f"{hashlib.sha256(data).hexdigest()[:12]}_{safe}"
    target.write_bytes(data)
    return str(target)


@st.cache_resource
def store() -> Any:
    """The run store (under ``$MSA_HOME`` or the user cache directory)."""
    return backend.RunStore(os.environ.get("MSA_HOME") or None)


@st.cache_resource
def runner() -> Any:
    """The background job runner (threads or processes; it never imports Streamlit)."""
    return backend.JobRunner(store())


def record(run_id: str | None) -> Any:
    """The run record with this id, or None (the store caches results itself)."""
    if not run_id:
        return None
    try:
        return store().get(run_id)
    except Exception:  # noqa: BLE001 - an unreadable or deleted run is just "no run"
        return None


def runs_for(ref: str, inputs: str | None = None) -> list[Any]:
    """Stored runs of one model (with these example inputs), newest first."""
    try:
        records = [r for r in store().list() if r.spec.model == ref and (r.spec.inputs or None) == (inputs or None)]
    except Exception:  # noqa: BLE001
        return []
    return sorted(records, key=lambda r: r.created, reverse=True)


def units_key(units: Any) -> tuple:
    """A hashable form of a units list (paths and frozen UnitSpecs)."""
    if units is None:
        return ()
    return tuple(units)


def game_units(subj: Any, units: Any) -> tuple:
    """A run's units as a game takes them: preset names expanded, () for the subject's defaults."""
    if not units:
        return ()
    presets = getattr(subj, "unit_presets", {}) or {}
    expanded: list[Any] = []
    for unit in units:
        expanded.extend(presets[unit] if isinstance(unit, str) and unit in presets else [unit])
    return tuple(expanded)


def raw_objective(subj: Any) -> str | None:
    """The name of the subject's objective whose game value is the raw model output (factory -> None)."""
    for name, factory in subj.objectives.items():
        try:
            if factory() is None:
                return name
        except Exception:  # noqa: BLE001 - factories that need options are not raw
            continue
    return None


@st.cache_resource(show_spinner="Preparing the editor...", max_entries=6)
def editor(ref: str, units: tuple, lesion: str | None, objective: str | None = None,
           inputs: str | None = None, tasks: str | None = None) -> LesionEditor:
    """A :class:`~msa_core.editor.LesionEditor` of ``ref`` for these units.

    ``objective=None``: the game is the raw model output, and every other objective of the subject that
    runs on the same inputs is scored from it; otherwise the game of that objective (e.g.
    ``"token log-prob:hello"``) with no extra scores.
    """
    subj = subject(ref, inputs, tasks)
    units_arg = list(units) if units else None
    if objective is not None:
        return LesionEditor(subj.game(units=units_arg, objective=objective, lesion=lesion))
    raw_name = raw_objective(subj)
    if raw_name is not None:
        game = subj.game(units=units_arg, objective=raw_name, lesion=lesion)
    else:  # no raw-output objective: build the raw game with the engine directly
        from msa_core import lesion_game

        resolve = getattr(subj, "resolve_units", None)
        specs = resolve(units_arg) if resolve else (units_arg or subj.default_units)
        game = lesion_game(subj.model, specs, subj.inputs, lesion=lesion or getattr(subj, "default_lesion", "zero"))
    objectives = {}
    for name, factory in subj.objectives.items():
        if name == raw_name:
            continue
        try:
            made = factory()
        except Exception:  # noqa: BLE001 - factories that need options are not scored in the editor
            continue
        if made is not None and getattr(made, "inputs", None) is None:
            objectives[name] = made
    return LesionEditor(game, objectives)


@st.cache_resource(max_entries=16)
def throughput(ref: str, units: tuple, objective: str | None, lesion: str | None,
               inputs: str | None = None) -> tuple[float, int]:
    """(evaluations per second, number of players) of a game, measured once."""
    game = subject(ref, inputs).game(units=list(units) if units else None, objective=objective, lesion=lesion)
    return measure_throughput(game), int(game.n_players)


@st.cache_data(show_spinner="Computing lesion curves...", max_entries=32)
def lesion_curve_data(run_id: str, objective: str | None, n_random: int, metric: str,
                      rankings: tuple[str, ...] = ()) -> Any:
    """:func:`msa_core.analysis.lesion_report.lesion_curve_report` of a run, scored on ``objective`` (any
    objective of the model), cached per run and settings (all rankings when ``rankings`` is empty)."""
    from msa_core.analysis.lesion_report import RANKINGS, lesion_curve_report

    rec = record(run_id)
    subj = subject(rec.spec.model, rec.spec.inputs)
    units = game_units(subj, rec.spec.units)
    game = subj.game(units=list(units) if units else None, objective=objective, lesion=rec.spec.lesion)
    return lesion_curve_report(game, rec.result, rankings=rankings or tuple(RANKINGS), n_random=n_random,
                               metric=metric, band=(2.5, 97.5))


@st.cache_resource(show_spinner="Summarising the modes...", max_entries=16)
def run_summaries(run_id: str, max_side: int = 32) -> tuple[Any, Any, float]:
    """``(thumbnails (n_units, h, w), totals (n_units,), efficiency gap)`` of a stored run, read a range of units at a
    time and cached next to its arrays (msa_core.thumbnails): the Modes page's grid of a large run.

    Held once per server (not copied on every rerun as ``st.cache_data`` would: 16 MiB of thumbnails for 4,096
    units), so the arrays are read-only."""
    from msa_core.thumbnails import run_efficiency_gap, run_thumbnails, run_totals

    result = store().get(run_id).result
    thumbs, totals = run_thumbnails(result, max_side), run_totals(result, max_side)
    for array in (thumbs, totals):
        array.setflags(write=False)
    return thumbs, totals, run_efficiency_gap(result, max_side)


@st.cache_resource(show_spinner="Drawing the mode grid...", max_entries=32)
def modes_grid(run_id: str, n_evaluations: int, order: str, sample: Any, scale: str, max_units: int) -> Any:
    """The Modes page's unit grid of a stored run (:func:`msa_core.mode_views.grid_figure`), built once per run
    and grid settings and shared (plotly figures are copied by ``st.plotly_chart``, never changed): changing
    the unit does not rebuild it. ``n_evaluations`` keys a run whose stored result was replaced (a resume)."""
    from msa_core.mode_views import grid_figure

    result = store().get(run_id).result
    summaries = run_summaries(run_id) if result.on_disk else None
    return grid_figure(result, order=order, sample=sample, scale=scale, max_units=max_units, summaries=summaries)
