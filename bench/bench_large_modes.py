"""Time to open and to change the unit on the Modes page of a large on-disk run (issue 13).

A synthetic float32 run of ``n_units`` image modes ``(n_images, 1, side, side)`` stored on disk
(dcgan-digits as the subject). Prints, all measured in this one run:

* AppTest (server side, the whole script): first open (thumbnails computed), second open (read from
  ``arrays/<id>``), and the rerun after the "Unit" selectbox changes (with the two-step picker of runs over
  512 units the "Unit range" is set first, untimed);
* the work of one unit change, timed directly: now (the unit-detail fragment: read one unit, its figure and
  its top outputs, serialised) against before (the same plus the grid figure rebuilt, as every rerun did);
* in Chromium (``streamlit run``, Playwright), two servers on the same run: "before", one "Unit" selectbox of
  every unit (``MSA_MODES_SINGLE_PICKER_MAX`` set past ``n_units``, the picker every run had), and "after",
  the page's own picker (two steps past 512 units: "Unit range", then "Unit"): from Enter in a box to the new
  unit's detail drawn (a fragment rerun), and after a whole-page rerun (the "Image (unit detail)" choice,
  outside the fragment: grid re-sent and redrawn);
* ``result.mode(i)``.

    flock /tmp/browser.lock env PYTHONPATH=$PWD python bench/bench_large_modes.py [n_units] [n_images] [side]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # the synthetic run and the browser helpers of the e2e test

import large_modes_app as app  # noqa: E402


def _median_ms(seconds: list[float]) -> str:
    return f"{1e3 * statistics.median(seconds):.0f} ms (median of {len(seconds)})"


def apptest_times(run_id: str, n_units: int, units: list[int], result) -> tuple[float, float, list[float]]:
    """(first open, second open, full reruns after each unit change) of the page in AppTest, in seconds."""
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    from msa_core.thumbnails import run_totals

    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # every run through app.py, as a real session (tests/app/conftest.py)
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init

    def open_page() -> tuple[AppTest, float]:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        for key, value in {"model": "dcgan-digits", "run": run_id, "unit": str(n_units // 2)}.items():
            at.query_params[key] = value
        at._page_hash = calc_hash("modes")
        start = time.perf_counter()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at, time.perf_counter() - start

    _, first = open_page()
    totals = run_totals(result)  # cached by that first open: the page's ranking (the two-step picker's ranges)
    st.cache_resource.clear()  # the second open reads the files in arrays/<id>, not Streamlit's cache
    at, second = open_page()
    changes = []
    for unit in units:
        ranges = [w for w in at.selectbox if w.label == "Unit range"]
        if ranges:  # the two-step picker: the unit's range first (untimed), then the unit as below
            name = app.unit_range(totals, unit)[0]
            if ranges[0].options[ranges[0].index] != name:
                ranges[0].select_index(ranges[0].options.index(name)).run()
        next(w for w in at.selectbox if w.label == "Unit").set_value(unit)
        start = time.perf_counter()
        at.run()
        changes.append(time.perf_counter() - start)
        assert next(w for w in at.selectbox if w.label == "Unit").value == unit
    PagesManager.__init__ = original
    return first, second, changes


def unit_change_work(result, summaries, units: list[int]) -> tuple[list[float], list[float]]:
    """Seconds of one unit change's work: (now: the detail fragment, before: plus the grid figure rebuilt)."""
    import plotly.io

    from msa_core import figures, mode_views

    def detail(unit: int) -> None:
        source = mode_views.unit_source(result, unit)
        plotly.io.to_json(mode_views.detail_figure(source, 0, sample="mean"), validate=False)
        figures.top_outputs(source, 0, k=10)

    now, before = [], []
    for unit in units:
        start = time.perf_counter()
        detail(unit)
        now.append(time.perf_counter() - start)
        start = time.perf_counter()
        grid = mode_views.grid_figure(result, order="total", scale="shared", max_units=32, summaries=summaries)
        plotly.io.to_json(grid, validate=False)
        detail(unit)
        before.append(time.perf_counter() - start)
    return now, before


def _whole_page_reruns(page: Any, unit: int) -> list[float]:
    """Seconds of whole-page reruns through the "Image (unit detail)" choice (outside the fragment: the grid is
    re-sent and redrawn), ``unit`` being the unit shown: from Enter until its new detail is drawn and the app idle."""
    whole = []
    for sample in [1, "mean", 0, "mean"]:
        box = page.get_by_role("combobox", name="Image (unit detail)", exact=True)
        text = "mean over inputs" if sample == "mean" else f"input {sample}"
        box.click()
        page.keyboard.type(text)
        page.get_by_role("option", name=text, exact=True).first.wait_for()
        title = app.detail_title(unit) if sample == "mean" else f"unit {app.unit_label(unit)} (input {sample})"
        start = time.perf_counter()
        box.press("Enter")
        page.wait_for_function(app.DETAIL_SHOWN, arg=title, timeout=120_000, polling="raf")
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        whole.append(time.perf_counter() - start)
        app.settle(page)
    return whole


def browser_times(home: str, units: list[int], totals) -> dict[str, Any] | None:
    """Seconds in Chromium, two servers on the same run, their changes interleaved (same load on the machine):
    ``before``, one "Unit" selectbox of every unit (``MSA_MODES_SINGLE_PICKER_MAX`` past ``n_units``: the picker
    every run had), against the page's own picker: ``unit`` (changes in its "Unit" selectbox), ``range`` (in
    "Unit range", two-step picker only), ``whole`` (whole-page reruns) and the page opens. None without Chromium."""
    if not Path(app.CHROMIUM).exists():
        return None
    import contextlib

    from playwright.sync_api import sync_playwright

    with contextlib.ExitStack() as stack:
        url_one = stack.enter_context(app.streamlit_server(home, Path(home) / "streamlit-one.log",
                                                           MSA_MODES_SINGLE_PICKER_MAX=str(10**9)))
        url_own = stack.enter_context(app.streamlit_server(home, Path(home) / "streamlit-own.log"))
        p = stack.enter_context(sync_playwright())
        pages = []
        for _ in range(2):  # a browser each: neither page is a background tab
            chromium = p.chromium.launch(executable_path=app.CHROMIUM, args=app.ARGS, headless=True)
            stack.callback(chromium.close)
            pages.append(chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page())
            pages[-1].set_default_timeout(120_000)
        one, own = pages
        times: dict[str, Any] = {"open_before": app.open_modes(one, url_one, units[0]),
                                 "open": app.open_modes(own, url_own, units[0]), "before": [], "unit": [], "range": []}
        two_step = own.get_by_role("combobox", name="Unit range", exact=True).count() > 0
        shown = app.unit_range(totals, units[0])[0] if two_step else None
        for unit in units[1:]:
            times["before"].append(app.choose_unit(one, unit))
            if two_step:  # the unit's range first (the page then shows that range's first unit), then the unit
                name, first = app.unit_range(totals, unit)
                if name != shown:
                    times["range"].append(app.choose_range(own, name, first))
                    shown = name
                if unit == first:
                    continue
            times["unit"].append(app.choose_unit(own, unit))
        times["whole"] = _whole_page_reruns(own, units[-1])
        return times


def main(n_units: int = 1024, n_images: int = 8, side: int = 64) -> None:
    os.environ["MSA_HOME"] = home = tempfile.mkdtemp(prefix="msa-bench-modes-")
    import numpy as np

    from msa_core.thumbnails import run_efficiency_gap, run_thumbnails, run_totals

    result = app.make_on_disk_run(home, n_units, n_images=n_images, side=side)
    print(f"on-disk run: {n_units} units x {(n_images, 1, side, side)}, {result.values.nbytes / 2**20:.0f} MiB of modes")
    rng = np.random.default_rng(1)
    units = [int(u) for u in rng.choice(n_units, size=12, replace=False)]

    first, second, reruns = apptest_times(app.RUN_ID, n_units, units, result)
    totals = run_totals(result)  # the page's ranking of the units (and the two-step picker's ranges), cached
    print(f"AppTest: first open {first:.2f} s (thumbnails computed), second open {second:.2f} s (cached); "
          f"rerun after a unit change {_median_ms(reruns)}")
    summaries = (run_thumbnails(result), totals, run_efficiency_gap(result))
    now, before = unit_change_work(result, summaries, units)
    print(f"work of one unit change: now {_median_ms(now)}, before (grid rebuilt) {_median_ms(before)}; "
          f"ratio {statistics.median(before) / statistics.median(now):.1f}x")
    start = time.perf_counter()
    result.mode(n_units // 3)
    print(f"result.mode(i) {1e3 * (time.perf_counter() - start):.2f} ms")
    shown = browser_times(home, units, totals)
    if shown is None:
        print("browser: /usr/bin/chromium not installed, skipped")
    else:
        before, after = statistics.median(shown["before"]), statistics.median(shown["unit"])
        print(f"browser, before (one selectbox of {n_units:,} units): page open {shown['open_before']:.2f} s; unit "
              f"change (Enter to the new detail drawn) {_median_ms(shown['before'])}")
        steps = f"; range change (Enter in \"Unit range\" to its first unit drawn) {_median_ms(shown['range'])}" \
            if shown["range"] else " (one selectbox)"
        print(f"browser, after (the page's picker): page open {shown['open']:.2f} s; unit change "
              f"{_median_ms(shown['unit'])}{steps}; whole-page rerun {_median_ms(shown['whole'])}; unit change "
              f"before / after {before / after:.2f}x")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
