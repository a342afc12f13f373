"""Links from the findings report to its stored runs in the app (no Streamlit here: the page only draws them).

A run of ``findings_runs.json`` opens in the app's Modes, Lesion curves and Editor pages with a URL holding
its model, its example-inputs file when it has one, and its run id (``?model=...&inputs=...&run=...``, the
app's global query parameters). The paths are relative (``modes?...``), so they resolve against wherever
the app is served, under a base path too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from .runs import SECTIONS

__all__ = ["RUN_PAGES", "run_url", "run_links", "section_of_heading", "distinct_runs"]

RUN_PAGES = {"Modes": "modes", "Lesion curves": "curves", "Editor": "editor"}
"""Page title -> URL path (as ``app.py`` names them) of the pages that open a run."""

_NUMBERING = re.compile(r"^\s*#*\s*\d+[a-z]?\.\s*")


def run_url(ref: dict[str, Any], url_path: str) -> str:
    """The relative URL that opens ``ref``'s run on the page at ``url_path``.

    Args:
        ref: one run of :func:`msa_core.report.findings_runs` (uses ``spec["model"]``, ``spec["inputs"]``
            and ``short_id``; the app resolves a short id to its run).
        url_path: the page's URL path, e.g. ``"modes"``.

    Returns:
        e.g. ``"modes?model=mlp-fashion&run=1801009eef3c"``.
    """
    spec = ref.get("spec") or {}
    params = {"model": spec["model"]}
    if spec.get("inputs"):
        params["inputs"] = spec["inputs"]
    params["run"] = ref.get("short_id") or ref["run_id"][:12]
    return f"{url_path}?{urlencode(params)}"


def run_links(ref: dict[str, Any]) -> dict[str, str]:
    """``{page title: relative URL}`` for every page of :data:`RUN_PAGES`."""
    return {title: run_url(ref, path) for title, path in RUN_PAGES.items()}


def distinct_runs(refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``refs`` without repeats of the same run id (first label kept), in order."""
    seen: set[str] = set()
    out = []
    for ref in refs:
        if ref["run_id"] not in seen:
            seen.add(ref["run_id"])
            out.append(ref)
    return out


def section_of_heading(heading: str) -> str | None:
    """The section key (of :data:`SECTIONS`) whose heading a Markdown heading of FINDINGS.md starts with.

    Numbering and ``#`` marks are ignored on both sides: ``"### Neuron Shapley's estimators on mlp-fashion"``
    is section ``"estimators"`` (``"2b. Neuron Shapley's estimators"``). None when no section matches.
    """
    text = _NUMBERING.sub("", heading).strip().lower()
    text = text.lstrip("#").strip()
    for key, title in SECTIONS.items():
        if text.startswith(_NUMBERING.sub("", title).strip().lower()):
            return key
    return None
