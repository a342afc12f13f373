"""End-to-end (issue 13): the Editor of a reduced-width paper generator (the recipe
``msa_core.zoo.paper_gan:paper_gan`` with the user's weights) on an on-disk run of 131 channels, in a real
browser: a click on a cell lesions that channel and the Shapley prediction is drawn next to the actual output;
a second click restores it (the unit picker of larger games: tests/app/test_large_editor.py); the output is drawn
in colour (RGB). Screenshots: ``test-artifacts/editor-large.png``, ``editor-large-output.png``."""

from __future__ import annotations

import base64
import io
import os
import urllib.parse
import urllib.request

import numpy as np
import pytest

from app_server import streamlit_server
from test_browser import ARGS, ARTIFACTS, CHROMIUM, _click_unit, _metric, _no_exception, _settle, _shot, sync_api

pytestmark = pytest.mark.e2e
REF = "msa_core.zoo.paper_gan:paper_gan"


@pytest.fixture(scope="module")
def large_server(tmp_path_factory):
    """``streamlit run app.py`` with the paper_gan recipe's weights set and an on-disk run of all its channels."""
    from safetensors.torch import save_file

    from msa_core.runs import RunSpec, RunStore, execute
    from msa_core.zoo.paper_gan import paper_dcgan_generator

    home = tmp_path_factory.mktemp("msa_home_large")
    weights = home / "generator.safetensors"
    generator = paper_dcgan_generator(seed=2, channels=(64, 32, 16, 8, 8))
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(weights))
    previous = {key: os.environ.get(key) for key in ("MSA_PAPER_GAN_WEIGHTS", "MSA_PAPER_GAN_LATENTS")}
    os.environ.update(MSA_PAPER_GAN_WEIGHTS=str(weights), MSA_PAPER_GAN_LATENTS="1")
    try:
        store = RunStore(str(home))
        run = execute(RunSpec(REF, units=tuple(f"net.{i}" for i in range(6)), n_permutations=1), store=store,
                      max_memory="16MB")
        result = store.get(run.id).result
        assert result.on_disk
        unit = int(abs(result.total_contribution()).argmax())  # a channel whose lesion changes the image
        # the intact image as the page should draw it: Tanh outputs on [-1, 1], each channel black to white (RGB)
        colour = np.round((result.intact[0].double().numpy().transpose(1, 2, 0) + 1) / 2 * 255)
        store.close()
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    with streamlit_server(home, home / "streamlit.log", MSA_TORCH_THREADS="1", MSA_PAPER_GAN_WEIGHTS=str(weights),
                          MSA_PAPER_GAN_LATENTS="1") as url:
        yield url, run.id, unit, colour


def _image_rows(src: str) -> list[np.ndarray]:
    """The three rows (intact, edited, difference) of the editor's inline output PNG, each ``(128, 128, 3)``."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"), dtype=float)
    return [pixels[r * 129:r * 129 + 128, :128] for r in range(3)]


def test_click_a_channel_of_a_large_on_disk_run(large_server):
    url, run_id, unit, colour = large_server
    query = urllib.parse.urlencode({"model": REF, "run": run_id})
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/editor?{query}")
            page.get_by_text("Lesioned units").first.wait_for()
            _settle(page)
            _no_exception(page)
            assert page.locator('[data-testid="stPlotlyChart"]').first.locator(".point").count() == 131
            lesion_s = _click_unit(page, unit)  # returns once the output image has changed
            assert _metric(page, "Lesioned units") == "1" and _metric(page, "Prediction error") is not None
            assert page.locator('img[data-testid="msaPredictionImage"]').count() == 1
            assert page.get_by_text("Lesioned: net.").count() == 1
            _shot(page, "editor-large")
            image = page.locator('img[data-testid="msaOutputImage"]')
            image.scroll_into_view_if_needed()
            image.screenshot(path=str(ARTIFACTS / "editor-large-output.png"))  # what the browser drew
            rows = _image_rows(image.get_attribute("src"))
            # random weights: Tanh outputs near 0, a mid-grey image (it was white, the lesioned one black, when
            # both were stretched to their joint range), now in colour: its three channels drawn, not averaged
            assert np.abs(rows[0] - colour).max() <= 1 and 100 < rows[0].mean() < 155
            assert np.abs(rows[0][..., 0] - rows[0][..., 2]).max() >= 2  # red and blue differ: not grey
            assert 100 < rows[1].mean() < 155  # the lesioned image on the same scale: grey-ish too
            # the difference row: each channel's shift around mid-grey, its largest |difference| at 0 or 255
            assert rows[2].max() == 255 or rows[2].min() == 0
            assert page.get_by_text("each colour channel from -1 to 1").count() == 1
            undo_s = _click_unit(page, unit)
            assert _metric(page, "Lesioned units") == "0" and float(_metric(page, "Prediction error")) == 0.0
            _no_exception(page)
            print(f"\nlarge on-disk editor (131 channels, 1 latent): click-to-output {1e3 * lesion_s:.0f} ms, "
                  f"undo {1e3 * undo_s:.0f} ms")
        finally:
            browser.close()


def test_the_model_page_offers_and_opens_the_paper_generator(large_server):
    url, _, _, _ = large_server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/?model=mlp-digits")  # the Model page is the default page
            page.get_by_text("Layer catalogue").wait_for()
            _settle(page)
            page.get_by_text("Load another model").click()
            button = page.get_by_role("button", name="paper DCGAN generator")
            button.wait_for()
            assert button.is_enabled()
            assert page.get_by_text("Available: the weights in").count() == 1
            button.click()
            page.get_by_role("heading", name="paper DCGAN generator").wait_for()
            _settle(page)
            _no_exception(page)
            assert urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["model"] == [REF]
            _shot(page, "model-paper-gan")
        finally:
            browser.close()
