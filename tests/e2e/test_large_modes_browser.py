"""End-to-end: the Modes page of an on-disk run with a few hundred image units in a real browser (issue 13).

Opens ``/modes?run=&unit=``, changes the unit through the real "Unit" selectbox and checks that the detail
shows that unit: its title and the mode image's values (the stored mode averaged over inputs). Screenshot in
``test-artifacts/``. Timing is in ``bench/bench_large_modes.py``, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from large_modes_app import ARGS, CHROMIUM, ROOT, choose_unit, detail_z, make_on_disk_run, open_modes, \
    streamlit_server, unit_label

pytestmark = pytest.mark.e2e

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

N_UNITS = 300


def test_modes_page_of_an_on_disk_run_changes_unit_in_the_browser(tmp_path):
    home = tmp_path / "msa_home"
    result = make_on_disk_run(str(home), N_UNITS, n_images=4, side=32)
    totals = result.total_contribution().numpy()
    first, second = int(np.argsort(totals)[N_UNITS // 2]), int(np.argsort(totals)[3])  # neither is the default
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with streamlit_server(str(home), tmp_path / "streamlit.log") as url, sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            open_modes(page, url, first)
            assert page.locator('[data-testid="stException"]').count() == 0
            combobox = page.get_by_role("combobox", name="Unit", exact=True)
            assert combobox.input_value().startswith(f"{unit_label(first)} (")
            expected = result.mode(first).numpy().astype(np.float64).mean(axis=(0, 1))
            np.testing.assert_allclose(detail_z(page, first), expected, rtol=1e-5, atol=1e-6)

            choose_unit(page, second)  # through the real widget
            assert page.locator('[data-testid="stException"]').count() == 0
            assert combobox.input_value().startswith(f"{unit_label(second)} (")
            expected = result.mode(second).numpy().astype(np.float64).mean(axis=(0, 1))
            np.testing.assert_allclose(detail_z(page, second), expected, rtol=1e-5, atol=1e-6)
            assert not np.allclose(expected, result.mode(first).numpy().mean(axis=(0, 1)), atol=1e-3)
            assert f"unit={second}" in page.url  # the link follows the widget (a fragment rerun too)
            # the grid (top units by total) is still drawn: the fragment rerun left it in place
            assert page.locator(".js-plotly-plot").count() >= 2
            page.wait_for_timeout(800)  # let Plotly finish drawing
            page.screenshot(path=str(artifacts / "modes_on_disk_unit_change.png"), full_page=True)
        finally:
            chromium.close()
