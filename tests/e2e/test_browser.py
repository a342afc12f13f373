"""End-to-end: a real browser (Playwright + Debian's Chromium) against ``streamlit run app.py``.

Loads a built-in model, launches a small run and waits for it, opens the modes, lesion curves and
findings, and in the editor clicks a unit, checks that the output changes and that a second click
undoes it. Screenshots of every page go to ``test-artifacts/``. Prints (does not assert) the time from
a click in the editor to the updated output for every built-in model (``MSA_E2E_DEBUG=1`` also prints,
per click, when the metrics changed and when the output image was drawn). A copied link reproduces the
view: on every page the browser sets non-default values, takes the URL, opens it in a NEW browser
context and compares what the widgets and metrics show.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from app_server import streamlit_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served by ``streamlit run`` on a free port, with its own run store; stopped afterwards."""
    from msa_core.runs import RunSpec, RunStore, execute

    home = tmp_path_factory.mktemp("msa_home")
    store = RunStore(str(home))
    runs = {model: execute(RunSpec(model, budget=40), store=store).id for model in ("dcgan-digits", "moe-lm")}
    runs["mlp-digits"] = execute(RunSpec("mlp-digits", budget=400), store=store).id
    store.close()
    with streamlit_server(home, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url, runs


@pytest.fixture(scope="module")
def browser(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_tab(browser):
    """A tab in a NEW browser context (its own cookies and storage: a collaborator's fresh browser)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    return tab


@pytest.fixture(scope="module")
def page(browser):
    return _new_tab(browser)


def _settle(page) -> None:
    """Wait until the app stops running (no 'Running...' status widget) and charts are drawn."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "!document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=90_000)
    page.wait_for_timeout(300)


def _shot(page, name: str) -> None:
    page.wait_for_timeout(800)  # let Plotly finish redrawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _metric(page, label: str) -> str | None:
    return page.evaluate(
        """(label) => {
            for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
                const l = m.querySelector('[data-testid="stMetricLabel"]');
                const v = m.querySelector('[data-testid="stMetricValue"]');
                if (l && v && l.innerText.trim() === label) return v.innerText.trim();
            }
            return null;
        }""",
        label,
    )


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "a Python exception reached the page"


def _click_unit(page, unit: int) -> float:
    """Click grid cell ``unit`` in the editor; return seconds until the output is updated: 'Lesioned
    units' has changed and, for image models, the new output image has loaded."""
    before = _metric(page, "Lesioned units")
    before_image = _output_image(page)
    grid = page.locator('[data-testid="stPlotlyChart"]').first
    point = grid.locator(".scatterlayer .trace").first.locator(".point").nth(unit)
    point.wait_for(state="visible")
    page.wait_for_timeout(200)  # a freshly mounted chart binds its click handlers after drawing
    box = point.bounding_box()
    assert box is not None, "grid cell not drawn"
    started = time.perf_counter()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        """([before]) => {
            for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
                const l = m.querySelector('[data-testid="stMetricLabel"]');
                const v = m.querySelector('[data-testid="stMetricValue"]');
                if (l && v && l.innerText.trim() === 'Lesioned units') return v.innerText.trim() !== before;
            }
            return false;
        }""",
        arg=[before],
        timeout=30_000,
    )
    metric_at = time.perf_counter() - started
    if before_image is not None:  # st.image: the browser fetches the new PNG after the metric changes
        page.wait_for_function(
            """([before]) => {
                const img = document.querySelector('img[data-testid="msaOutputImage"]');
                return img && img.getAttribute('src') !== before && img.complete && img.naturalWidth > 0;
            }""",
            arg=[before_image],
            timeout=30_000,
        )
    elapsed = time.perf_counter() - started
    if os.environ.get("MSA_E2E_DEBUG"):
        print(f"  metric {metric_at * 1000:.0f} ms, output {elapsed * 1000:.0f} ms")
    _settle(page)
    return elapsed


def _output_image(page) -> str | None:
    """The src of the editor's output image (image models), or None."""
    images = page.locator('img[data-testid="msaOutputImage"]')
    return images.first.get_attribute("src") if images.count() else None


def _editor_roundtrip(page, model: str, url: str, unit: int = 0, shot: str | None = None,
                      repeats: int = 3, query: str | None = None) -> tuple[list[float], list[float]]:
    """Open the editor of ``model`` (or of the URL query ``query``); ``repeats`` times: click ``unit`` (the
    output changes), click it again (the output is back to intact). Returns the click-to-output seconds of
    the lesions and of the undos."""
    page.goto(f"{url}/editor?{query or f'model={model}'}")
    page.get_by_text("Lesioned units").first.wait_for()
    _settle(page)
    _no_exception(page)
    assert _metric(page, "Lesioned units") == "0"
    assert float(_metric(page, "Output change")) == 0.0
    intact_image = _output_image(page)
    lesions, undos = [], []
    for k in range(repeats):
        lesions.append(_click_unit(page, unit))
        assert _metric(page, "Lesioned units") == "1"
        assert float(_metric(page, "Output change")) > 0.0, f"{model}: lesioning a unit changed nothing"
        if intact_image is not None:
            assert _output_image(page) != intact_image, f"{model}: the output image did not change"
        if shot and k == 0:
            _shot(page, shot)
        undos.append(_click_unit(page, unit))
        assert _metric(page, "Lesioned units") == "0", f"{model}: a second click did not undo the lesion"
        assert float(_metric(page, "Output change")) == 0.0
    _no_exception(page)
    return lesions, undos


def _report(model: str, lesions: list[float], undos: list[float]) -> None:
    both = sorted(lesions + undos)
    median = (both[len(both) // 2] + both[(len(both) - 1) // 2]) / 2
    print(f"\nclick-to-output {model}: median {median * 1000:.0f} ms over {len(both)} clicks "
          f"(lesion {', '.join(f'{x * 1000:.0f}' for x in lesions)}; undo {', '.join(f'{x * 1000:.0f}' for x in undos)} ms)")


def test_model_run_modes_editor(server, page):
    url, _ = server
    # 1. a deep link as the server's very first request: the page must run inside app.py (sidebar, pages)
    page.goto(f"{url}/findings?model=mlp-digits")
    page.get_by_text("Across stored runs").wait_for()
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("MSA Explorer").count() >= 1, "the page ran without app.py"
    assert page.get_by_role("link", name="Lesion curves").count() >= 1
    # the Model page is the default page: its URL is the root
    page.goto(f"{url}/?model=mlp-digits")
    page.get_by_text("Layer catalogue").wait_for()
    _settle(page)
    _no_exception(page)
    assert page.get_by_role("dialog").count() == 0, "a dialog (e.g. 'Page not found') covers the page"
    _shot(page, "1_model")

    # 2. run page: launch a small run and wait for it
    page.goto(f"{url}/run?model=mlp-digits")
    page.get_by_role("button", name="Launch the run").wait_for()
    _settle(page)
    page.get_by_role("button", name="Launch the run").click()
    page.get_by_text(re.compile(r"Run [0-9a-f]{8} is ready")).wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "2_run")
    run_id = re.search(r"run=([0-9a-f]+)", page.url)
    assert run_id, f"the run is not in the URL: {page.url}"
    run_id = run_id.group(1)

    # 3. modes (a link with model and run reopens the same view)
    page.goto(f"{url}/modes?model=mlp-digits&run={run_id}")
    page.get_by_text("Unit detail").wait_for()
    _settle(page)
    _no_exception(page)
    _shot(page, "3_modes")

    # 4. lesion curves
    page.goto(f"{url}/curves?model=mlp-digits&run={run_id}")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("leave-one-out drop: largest first (AUC").count() >= 1  # every ranking, with its AUC
    _shot(page, "4_lesion_curves")

    # 5. editor with the run: click a unit, the scores change, a second click undoes it
    page.goto(f"{url}/editor?model=mlp-digits&run={run_id}")
    page.get_by_text("Lesioned units").first.wait_for()
    _settle(page)
    lesions, undos = [], []
    for k in range(3):
        lesions.append(_click_unit(page, 3))
        assert _metric(page, "Lesioned units") == "1"
        assert float(_metric(page, "Output change")) > 0
        if k == 0:
            _shot(page, "5_editor")
        undos.append(_click_unit(page, 3))
        assert _metric(page, "Lesioned units") == "0"
    _report("mlp-digits (with run)", lesions, undos)

    # 6. findings
    page.goto(f"{url}/findings?model=mlp-digits&run={run_id}")
    page.get_by_text("Across stored runs").wait_for()
    _settle(page)
    _no_exception(page)
    if (ROOT / "docs" / "FINDINGS.md").exists():  # its Markdown tables are drawn as tables
        assert page.locator('[data-testid="stMarkdownContainer"] table').count() >= 1
    _shot(page, "6_findings")


@pytest.mark.parametrize("model", ["mlp-digits-l1", "mlp-digits-l2", "dcgan-digits", "moe-lm"])
def test_editor_click_latency(server, page, model):
    lesions, undos = _editor_roundtrip(page, model, server[0], unit=1, shot=f"5_editor_{model}")
    _report(model, lesions, undos)


@pytest.mark.parametrize("model", ["dcgan-digits", "moe-lm"])
def test_modes_and_editor_of_image_and_language_runs(server, page, model):
    url, runs = server
    page.goto(f"{url}/modes?model={model}&run={runs[model]}")
    page.get_by_text("Unit detail").wait_for()
    _settle(page)
    _no_exception(page)
    _shot(page, f"3_modes_{model}")
    page.goto(f"{url}/editor?model={model}&run={runs[model]}")
    page.get_by_text("Lesioned units").first.wait_for()
    _settle(page)
    page.get_by_role("button", name="Lesion top-5").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stMetric"]')].some(m =>
            m.innerText.includes('Lesioned units') && m.innerText.includes('5'))""")
    _settle(page)
    _no_exception(page)
    _shot(page, f"5_editor_top5_{model}")


def test_upload_a_torchscript_model_with_its_inputs(server, page, tmp_path):
    """The Model page's upload tab: a TorchScript file and its example inputs, through the real file inputs."""
    import sys as _sys

    _sys.path.insert(0, str(ROOT))
    from tests.games_for_tests import save_torchscript_and_inputs

    _, pt, npz = save_torchscript_and_inputs(tmp_path)
    url, _ = server
    page.goto(f"{url}/?model=mlp-digits")  # the Model page is the default page: its URL is the root
    page.get_by_text("Layer catalogue").wait_for()
    _settle(page)
    page.get_by_text("Load another model").click()
    page.get_by_role("tab", name="Upload a file").click()
    uploaders = page.locator('[data-testid="stFileUploader"] input[type=file]')
    uploaders.nth(0).set_input_files(str(pt))
    page.get_by_text("tiny_script.pt").first.wait_for()
    _settle(page)  # each upload reruns the page: let it finish before the next one
    uploaders.nth(1).set_input_files(str(npz))
    page.get_by_text("inputs_0.npz").first.wait_for()
    _settle(page)
    page.get_by_role("button", name="Load the uploaded model").click()
    page.get_by_role("heading", name="tiny_script.pt").wait_for()
    _settle(page)
    _no_exception(page)
    assert "inputs=" in page.url, f"the inputs file is not in the URL: {page.url}"
    assert page.get_by_text("10 evaluation inputs").count() >= 1
    assert page.get_by_text("ops.relu").count() >= 1  # the TorchScript layer catalogue
    _shot(page, "1_model_torchscript_upload")
    lesions, undos = _editor_roundtrip(page, "uploaded TorchScript", url, unit=2, repeats=1,
                                       query=page.url.split("?", 1)[1])
    _report("uploaded TorchScript", lesions, undos)


# ------------------------------------------------------------------ a copied link reproduces the view
VIEW = """() => {
    const out = {};
    const label = el => { const l = el.querySelector('[data-testid="stWidgetLabel"]'); return l ? l.innerText.trim() : '?'; };
    for (const el of document.querySelectorAll('[data-testid="stSelectbox"]')) {
        const v = el.querySelector('input[role="combobox"]'); out['select:' + label(el)] = v ? v.value : null; }
    for (const el of document.querySelectorAll('[data-testid="stRadio"]')) {
        const c = el.querySelector('input:checked'); out['radio:' + label(el)] = c ? c.closest('label').innerText.trim() : null; }
    for (const el of document.querySelectorAll('[data-testid="stSlider"]')) {
        const t = el.querySelector('input[type="range"]'); out['slider:' + label(el)] = t ? t.value : null; }
    for (const el of document.querySelectorAll('[data-testid="stNumberInput"], [data-testid="stTextInput"]')) {
        const i = el.querySelector('input'); out['input:' + label(el)] = i ? i.value : null; }
    for (const el of document.querySelectorAll('[data-testid="stMultiSelect"]')) {
        out['multi:' + label(el)] = [...el.querySelectorAll('[data-tag]')].map(t => t.getAttribute('aria-label')).join('|'); }
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
        const l = m.querySelector('[data-testid="stMetricLabel"]').innerText.trim();
        if (!['Evaluation', 'Expected time'].includes(l)) out['metric:' + l] = m.querySelector('[data-testid="stMetricValue"]').innerText.trim(); }
    return out;
}"""


def _widget(page, testid: str, label: str):
    return page.locator(f'[data-testid="{testid}"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=label)).first


def _choose(page, label: str, option: str | int, exact: bool = True) -> None:
    """Pick ``option`` (its text, or its position) in the selectbox ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    if isinstance(option, int):  # by keyboard: the list may be long (virtualised)
        for _ in range(option):
            box.press("ArrowDown")
        box.press("Enter")
    else:
        page.get_by_role("option", name=option, exact=exact).first.click()
    _settle(page)


def _radio(page, label: str, option: str) -> None:
    _widget(page, "stRadio", label).get_by_text(option, exact=True).click()
    _settle(page)


def _number(page, label: str, value: int) -> None:
    box = _widget(page, "stNumberInput", label).locator("input")
    box.fill(str(value))
    box.press("Enter")
    _settle(page)


def _open(page, url: str, ready: str) -> dict:
    page.goto(url)
    page.get_by_text(ready).first.wait_for()
    _settle(page)
    _no_exception(page)
    return page.evaluate(VIEW)


def _same_in_a_new_browser(browser, page, ready: str, name: str) -> dict:
    """Open ``page``'s URL in a fresh context; assert the same URL and the same widget values and metrics."""
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / f"link_{name}_set.png"), full_page=True)
    link, view = page.url, page.evaluate(VIEW)
    fresh = _new_tab(browser)
    try:
        again = _open(fresh, link, ready)
        fresh.screenshot(path=str(ARTIFACTS / f"link_{name}_reopened.png"), full_page=True)
        assert fresh.url == link, "opening the link changed it"
        assert again == view, {k: (view.get(k), again.get(k)) for k in set(view) | set(again) if view.get(k) != again.get(k)}
    finally:
        fresh.context.close()
    return view


def test_a_copied_link_reproduces_every_page(server, browser, page):
    url, runs = server
    run = runs["mlp-digits"]
    # Modes: order, output, unit
    _open(page, f"{url}/modes?model=mlp-digits&run={run}", "Unit detail")
    _radio(page, "Order units by", "unit index")
    _choose(page, "Bars show", "digit 3")
    _choose(page, "Unit", 4)  # the fifth unit in index order
    view = _same_in_a_new_browser(browser, page, "Unit detail", "modes")
    assert view["radio:Order units by"] == "unit index" and view["select:Bars show"] == "digit 3"
    assert "·" in view["select:Run"], "the sidebar shows the run by its label, not a bare hash"

    # Modes of an image run: image, colour scale, units shown
    _open(page, f"{url}/modes?model=dcgan-digits&run={runs['dcgan-digits']}", "Unit detail")
    _choose(page, "Image", "input 1")
    _radio(page, "Colour scale", "per-unit")
    _widget(page, "stSlider", "Units shown").locator('input[type="range"]').press("ArrowLeft")
    _settle(page)
    view = _same_in_a_new_browser(browser, page, "Unit detail", "modes_image")
    assert view["select:Image"] == "input 1" and view["radio:Colour scale"] == "per-unit"

    # Lesion curves: objective, rankings shown
    _open(page, f"{url}/curves?model=mlp-digits&run={run}", "Rankings shown")
    _choose(page, "Objective", "class probability")
    page.get_by_role("button", name="Remove weight norm (in x out): largest first").click()
    _settle(page)
    view = _same_in_a_new_browser(browser, page, "Rankings shown", "curves")
    assert view["select:Objective"] == "class probability" and "weight norm" not in view["multi:Rankings shown"]

    # Editor: the lesion set and k
    _open(page, f"{url}/editor?model=mlp-digits&run={run}", "Lesioned units")
    _number(page, "k (units per preset)", 3)
    page.get_by_role("button", name="Lesion top-3").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stMetric\"]')].some(m => "
                           "m.innerText.includes('Lesioned units') && m.innerText.includes('3'))")
    view = _same_in_a_new_browser(browser, page, "Lesioned units", "editor")
    assert view["metric:Lesioned units"] == "3" and float(view["metric:Output change"]) > 0

    # Run page: units preset, estimator, budget
    _open(page, f"{url}/run?model=mlp-digits", "Launch the run")
    _radio(page, "Units", "hidden layer")
    _choose(page, "Estimator", "antithetic", exact=False)
    _number(page, "Budget (game evaluations)", 600)
    view = _same_in_a_new_browser(browser, page, "Launch the run", "run")
    assert view["radio:Units"] == "hidden layer" and view["select:Estimator"].startswith("antithetic")
    assert view["input:Budget (game evaluations)"] == "600"

    # /model opens the Model page, not "Page not found"
    page.goto(f"{url}/model?model=mlp-digits")
    page.get_by_text("Layer catalogue").wait_for()
    _settle(page)
    assert page.get_by_role("dialog").count() == 0
