"""End-to-end: a real browser (Playwright + Debian's Chromium) against ``streamlit run app.py``.

Loads a built-in model, launches a small run and waits for it, opens the modes, lesion curves and
findings, and in the editor clicks a unit, checks that the output changes and that a second click
undoes it. Screenshots of every page go to ``test-artifacts/``. Prints (does not assert) the time from
a click in the editor to the updated output for every built-in model (``MSA_E2E_DEBUG=1`` also prints,
per click, when the metrics changed and when the output image was drawn).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app served by ``streamlit run`` on a free port, with its own run store; stopped afterwards."""
    from msa_core.runs import RunSpec, RunStore, execute

    port = _free_port()
    home = tmp_path_factory.mktemp("msa_home")
    store = RunStore(str(home))
    runs = {model: execute(RunSpec(model, budget=40), store=store).id for model in ("dcgan-digits", "moe-lm")}
    store.close()
    env = dict(os.environ, MSA_HOME=str(home), PYTHONPATH=str(ROOT),
               MSA_TORCH_THREADS=os.environ.get("MSA_TORCH_THREADS", "1"))
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, runs
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        try:
            yield tab
        finally:
            browser.close()


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
