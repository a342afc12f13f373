"""End-to-end (issue 13): the Editor of a reduced-width paper generator (the recipe
``msa_core.zoo.paper_gan:paper_gan`` with the user's weights) on an on-disk run of 131 channels, in a real
browser: a click on a cell lesions that channel and the Shapley prediction is drawn next to the actual output;
a second click restores it (the unit picker of larger games: tests/app/test_large_editor.py). Screenshot: ``test-artifacts/editor-large.png``."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request

import pytest

from app_server import streamlit_server
from test_browser import ARGS, CHROMIUM, _click_unit, _metric, _no_exception, _settle, _shot, sync_api

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
        store.close()
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    with streamlit_server(home, home / "streamlit.log", MSA_TORCH_THREADS="1", MSA_PAPER_GAN_WEIGHTS=str(weights),
                          MSA_PAPER_GAN_LATENTS="1") as url:
        yield url, run.id, unit


def test_click_a_channel_of_a_large_on_disk_run(large_server):
    url, run_id, unit = large_server
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
            undo_s = _click_unit(page, unit)
            assert _metric(page, "Lesioned units") == "0" and float(_metric(page, "Prediction error")) == 0.0
            _no_exception(page)
            print(f"\nlarge on-disk editor (131 channels, 1 latent): click-to-output {1e3 * lesion_s:.0f} ms, "
                  f"undo {1e3 * undo_s:.0f} ms")
        finally:
            browser.close()
