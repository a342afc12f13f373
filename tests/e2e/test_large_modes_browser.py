"""End-to-end: the Modes page of an on-disk run with 600 image units in a real browser (issue 13).

600 units is past the one-selectbox limit (512), so the page shows the two-step picker: "Unit range" (64 units
a range, by rank of total) then "Unit". Opens ``/modes?run=&unit=``, checks both boxes show that unit, picks
another range through the real widget (its first unit is drawn), then a unit of it, and checks each time the
detail's title and the mode image's values (the stored mode averaged over inputs) and the URL's ``unit=``.
Then a three-channel (RGB) run: the detail draws the red, green and blue channels of the mode (their values
checked) and their colour shift. Screenshots in ``test-artifacts/``. Timing is in ``bench/bench_large_modes.py``,
not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from large_modes_app import ARGS, CHARTS, CHROMIUM, DETAIL_SHOWN, RGB_RUN_ID, ROOT, choose_range, choose_unit, \
    detail_z, make_on_disk_run, make_rgb_run, open_modes, settle, streamlit_server, unit_label, unit_range

pytestmark = pytest.mark.e2e

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

N_UNITS = 600


def _mean_mode(result, unit: int) -> np.ndarray:
    return result.mode(unit).numpy().astype(np.float64).mean(axis=(0, 1))


def test_modes_page_of_an_on_disk_run_changes_unit_in_the_browser(tmp_path):
    from msa_core.thumbnails import run_totals

    home = tmp_path / "msa_home"
    result = make_on_disk_run(str(home), N_UNITS, n_images=4, side=32)
    totals = run_totals(result)  # what the page ranks the units by (cached next to the run's arrays)
    ranking = np.argsort(-totals, kind="stable")
    first, second = int(ranking[N_UNITS // 2]), int(ranking[-4])  # ranks 301 and 597: neither is the default
    first_range, (second_range, second_start) = unit_range(totals, first)[0], unit_range(totals, second)
    assert second_start != second and first_range != second_range
    rgb = make_rgb_run(str(home))
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with streamlit_server(str(home), tmp_path / "streamlit.log") as url, sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            open_modes(page, url, first)
            assert page.locator('[data-testid="stException"]').count() == 0
            ranges = page.get_by_role("combobox", name="Unit range", exact=True)
            combobox = page.get_by_role("combobox", name="Unit", exact=True)
            assert ranges.input_value() == first_range == "ranks 257-320"
            assert combobox.input_value().startswith(f"{unit_label(first)} (")
            np.testing.assert_allclose(detail_z(page, first), _mean_mode(result, first), rtol=1e-5, atol=1e-6)

            choose_range(page, second_range, second_start)  # through the real widgets: a range, its first unit
            assert second_range == "ranks 577-600" and ranges.input_value() == second_range
            assert combobox.input_value().startswith(f"{unit_label(second_start)} (")
            assert f"unit={second_start}" in page.url
            np.testing.assert_allclose(detail_z(page, second_start), _mean_mode(result, second_start), rtol=1e-5,
                                       atol=1e-6)
            choose_unit(page, second)  # then a unit of that range
            assert page.locator('[data-testid="stException"]').count() == 0
            assert combobox.input_value().startswith(f"{unit_label(second)} (")
            expected = _mean_mode(result, second)
            np.testing.assert_allclose(detail_z(page, second), expected, rtol=1e-5, atol=1e-6)
            assert not np.allclose(expected, _mean_mode(result, first), atol=1e-3)
            assert f"unit={second}" in page.url  # the link follows the widget (a fragment rerun too)
            # the grid (top units by total) is still drawn: the fragment rerun left it in place
            assert page.locator(".js-plotly-plot").count() >= 2
            page.wait_for_timeout(800)  # let Plotly finish drawing
            page.screenshot(path=str(artifacts / "modes_on_disk_unit_change.png"), full_page=True)

            page.goto(f"{url}/modes?model=dcgan-digits&run={RGB_RUN_ID}&unit=3")  # an RGB run: one panel a channel
            page.wait_for_function(DETAIL_SHOWN, arg="unit rgb:3 (mean over inputs)", timeout=60_000, polling="raf")
            settle(page)
            assert page.locator('[data-testid="stException"]').count() == 0
            detail = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].filter(
                g => (g.layout.title.text || '').includes('rgb:3 (')).map(
                g => g._fullData.map(t => ({type: t.type, z: t.type === 'heatmap' ? Array.from(t.z, r => Array.from(r))
                                                                               : null})))[0]""")
            assert [t["type"] for t in detail] == ["heatmap"] * 3 + ["image", "heatmap"]
            channels = rgb.mode(3).numpy().mean(axis=0)  # (3, H, W), the mean over the two inputs
            for c in range(3):
                np.testing.assert_allclose(detail[c]["z"], channels[c], rtol=1e-9, atol=1e-12)
            assert len(page.evaluate(CHARTS)) >= 2  # the grid and the detail
            page.locator(".js-plotly-plot").last.scroll_into_view_if_needed()  # the detail: the page's last chart
            page.wait_for_timeout(800)
            page.screenshot(path=str(artifacts / "modes_rgb_detail.png"))
        finally:
            chromium.close()
