"""Helpers shared by tests/e2e/test_large_modes_browser.py and bench/bench_large_modes.py: a synthetic
on-disk image run in a run store, ``streamlit run app.py`` on a free port, and the Modes page's unit picker
driven through the real widgets (Playwright + Debian's Chromium): one "Unit" selectbox up to 512 units, else
"Unit range" then "Unit" (``ui.unit_picker``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from app_server import streamlit_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
RUN_ID = "cd" * 32


def unit_label(i: int) -> str:
    """The label of unit ``i`` in the synthetic run (unique, and no label is a prefix of another's text)."""
    return f"conv:{i}"


def make_on_disk_run(home: str, n_units: int, n_images: int = 4, side: int = 32, seed: int = 0) -> Any:
    """Store a synthetic run of ``n_units`` float32 image modes ``(n_images, 1, side, side)`` on disk (the
    ``dcgan-digits`` subject, so the page can read its labels); returns the stored ShapleyResult.

    Unit ``i``'s mode is ``(i + 1) / n_units`` times one fixed random pattern plus noise, so every unit's
    detail differs and its total is known."""
    import torch

    from msa_core.ondisk import ChunkedArray
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord

    store = RunStore(home, large_dtype="float32")
    shape = (n_units, n_images, 1, side, side)
    values = ChunkedArray.create(store.scratch_dir() / "large-modes" / "values", shape, np.float32)
    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=shape[1:])
    for start, stop in values.ranges(16 * 2**20):
        scale = (np.arange(start, stop) + 1.0)[:, None, None, None, None] / n_units
        rows = scale * pattern + 0.1 * rng.normal(size=(stop - start, *shape[1:]))
        values.write_rows(np.arange(start, stop), rows.astype(np.float32))
    zeros = torch.zeros(shape[1:], dtype=torch.float64)
    result = ShapleyResult(values=values, stderr=None, n_evaluations=1, intact=zeros, empty=zeros, method="permutation",
                           unit_labels=[unit_label(i) for i in range(n_units)])
    store.put(RunRecord(id=RUN_ID, spec=RunSpec(model="dcgan-digits"), result=result, created=1.0))
    stored = store.get(RUN_ID).result
    assert stored.on_disk, "the synthetic run must live on disk"
    return stored


RGB_RUN_ID = "ce" * 32


def make_rgb_run(home: str, n_units: int = 12, side: int = 32) -> Any:
    """Store a synthetic in-memory run of ``n_units`` three-channel image modes ``(2, 3, side, side)`` (the
    ``dcgan-digits`` subject); returns the stored ShapleyResult. Unit ``i`` raises red in a blob ``i + 1`` times
    as strongly, shifts green along the rows (negative at the top, positive at the bottom) and lowers blue in the
    blob, so its three channels and their colour shift all differ."""
    import torch

    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord

    grid = torch.linspace(-1, 1, side, dtype=torch.float64)
    blob = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / 0.2)
    mode = torch.stack([blob, 0.5 * grid[:, None].expand(side, side), -0.7 * blob])  # (3, side, side)
    values = torch.stack([(1 + i / n_units) * mode for i in range(n_units)])[:, None].expand(n_units, 2, 3, side, side)
    values = values.contiguous()
    zeros = torch.zeros(values.shape[1:], dtype=torch.float64)
    result = ShapleyResult(values=values, stderr=values.abs() / 20, n_evaluations=1, intact=zeros, empty=zeros,
                           method="permutation", unit_labels=[f"rgb:{i}" for i in range(n_units)])
    store = RunStore(home)
    store.put(RunRecord(id=RGB_RUN_ID, spec=RunSpec(model="dcgan-digits"), result=result, created=2.0))
    return store.get(RGB_RUN_ID).result


__all__ = ["streamlit_server"]  # re-exported for the benchmark and the tests


# every drawn Plotly chart: its title (Streamlit's theme wraps it in <b>: tags dropped) and its first trace's z as
# Plotly drew it (_fullData: the base64 arrays decoded, one Float64Array a row)
TITLE = "g => g.layout && g.layout.title ? (g.layout.title.text || '').replace(/<[^>]*>/g, '') : ''"
CHARTS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(g => ({
    title: (""" + TITLE + """)(g),
    z: g._fullData && g._fullData[0] && g._fullData[0].z ? Array.from(g._fullData[0].z, row => Array.from(row)) : null}))"""

DETAIL_SHOWN = """(title) => [...document.querySelectorAll('.js-plotly-plot')].some(
    g => (""" + TITLE + """)(g) === title)"""


def detail_title(i: int) -> str:
    """The unit detail's title for unit ``i`` of the synthetic run (mean over inputs)."""
    return f"unit {unit_label(i)} (mean over inputs)"


def settle(page: Any) -> None:
    """Wait until the app stops running and skeletons are gone."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "!document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=90_000)


def open_modes(page: Any, url: str, unit: int) -> float:
    """Open the Modes page of the synthetic run at ``unit``; seconds until that unit's detail is drawn."""
    start = time.perf_counter()
    page.goto(f"{url}/modes?model=dcgan-digits&run={RUN_ID}&unit={unit}")
    page.wait_for_function(DETAIL_SHOWN, arg=detail_title(unit), timeout=90_000, polling="raf")
    seconds = time.perf_counter() - start
    settle(page)
    return seconds


def unit_range(totals: Any, unit: int, order: str = "total") -> tuple[str, int]:
    """``(name, first unit)`` of the two-step picker's range that holds ``unit``, as the page builds it from the
    run's per-unit totals ``(n_units,)`` (``msa_core.thumbnails.run_totals``) in ``order``."""
    from msa_core import figures, mode_views

    units = figures.unit_order(np.asarray(totals)[:, None], order)
    labels = [unit_label(i) for i in range(len(units))]
    return next((name, members[0]) for name, members in mode_views.unit_ranges(units, labels, ranked=order != "index")
                if unit in members)


def _pick(page: Any, label: str, text: str, title: str) -> float:
    """Type ``text`` into the ``label`` selectbox (its option list is virtualised: typing filters it), press Enter;
    seconds from Enter until a chart titled ``title`` is drawn."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.keyboard.type(text)
    page.get_by_role("option", name=text, exact=False).first.wait_for()
    start = time.perf_counter()
    box.press("Enter")
    page.wait_for_function(DETAIL_SHOWN, arg=title, timeout=90_000, polling="raf")
    seconds = time.perf_counter() - start
    settle(page)
    return seconds


def choose_range(page: Any, name: str, first_unit: int) -> float:
    """Pick the range ``name`` in the "Unit range" selectbox (two-step picker); seconds from Enter until the
    detail of its first unit ``first_unit`` (which the page then selects) is drawn."""
    return _pick(page, "Unit range", name, detail_title(first_unit))


def choose_unit(page: Any, unit: int) -> float:
    """Pick ``unit`` in the "Unit" selectbox (typing its label, then Enter); seconds from Enter until its detail
    is drawn. With the two-step picker, ``unit`` must be in the range shown (:func:`choose_range` first)."""
    return _pick(page, "Unit", f"{unit_label(unit)} (", detail_title(unit))


def detail_z(page: Any, unit: int) -> np.ndarray:
    """The z of the unit detail's mode heatmap drawn for ``unit`` ``(rows, cols)``."""
    charts = page.evaluate(CHARTS)
    return np.asarray(next(c["z"] for c in charts if c["title"] == detail_title(unit)), dtype=float)
