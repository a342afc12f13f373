"""End-to-end: a collaborator's browser cannot stop the server through the Model page's path box.

A real Chromium against ``streamlit run app.py`` (no recipe opt-in) types ``os:abort``, then
``builtins:exit``, into "Path, recipe or Hugging Face folder" and checks that the page shows a refusal and
that the server still answers ``/_stcore/health``; then a pickled ``__main__.EvilNet`` file, whose name must
render as typed (no Markdown bold); then an upload over the size limit. Screenshots: ``test-artifacts/security-*.png``.
"""

from __future__ import annotations

import contextlib
import os
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

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """``streamlit run app.py`` on a free port with its own store, no MSA_RECIPE_* opt-in and a 1 MB upload
    limit: ``(url, process, log file, MSA_HOME)``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSA_RECIPE_")}
    home = tmp_path_factory.mktemp("home")
    env.update(MSA_HOME=str(home), PYTHONPATH=str(ROOT), MSA_TORCH_THREADS="1")
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.maxUploadSize", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not _healthy(url):
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, process, log, home
    finally:  # stop it: politely, then for good
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


def _type_reference(page, ref: str) -> None:
    box = page.get_by_label("Model reference")
    if not box.is_visible():
        page.get_by_text("Load another model").click()
        page.get_by_role("tab", name="Path, recipe or Hugging Face folder").click()
    box.fill(ref)
    box.press("Enter")  # commit the text so the Load button enables
    page.get_by_role("button", name="Load", exact=True).click()


def _alert_with(page, text: str) -> str:
    alert = page.get_by_role("alert").filter(has_text=text)
    alert.first.wait_for(timeout=60_000)
    return alert.first.inner_text()


def test_path_box_cannot_stop_the_server(app_url, tmp_path):
    url, process, log, home = app_url
    ARTIFACTS.mkdir(exist_ok=True)
    import torch
    from torch import nn

    class EvilNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    EvilNet.__module__, EvilNet.__qualname__ = "__main__", "EvilNet"
    sys.modules["__main__"].EvilNet = EvilNet
    try:
        torch.save(EvilNet(), tmp_path / "evil.pt")
    finally:
        del sys.modules["__main__"].EvilNet

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/?model=mlp-digits")
            page.get_by_text("Layer catalogue").wait_for(timeout=90_000)

            for step, ref in enumerate(["os:abort", "builtins:exit"], start=1):
                _type_reference(page, ref)
                text = _alert_with(page, f"refused to run the recipe '{ref}'")
                assert "MSA_RECIPE_MODULES=" in text and "MSA_RECIPE_DIRS=" in text, text
                assert process.poll() is None, f"the server died after {ref}:\n{log.read_text()[-2000:]}"
                assert _healthy(url), f"the server stopped answering after {ref}"
                page.get_by_text("Layer catalogue").wait_for()  # the page still shows the previous model
                page.screenshot(path=str(ARTIFACTS / f"security-{step}-{ref.replace(':', '-')}.png"), full_page=True)

            _type_reference(page, str(tmp_path / "evil.pt"))
            text = _alert_with(page, "pickled Python object")
            assert "(it needs __main__.EvilNet)" in text, text  # as typed: no bold "main", no lost underscores
            assert page.locator("[role=alert] strong").count() == 0
            page.screenshot(path=str(ARTIFACTS / "security-3-pickle.png"), full_page=True)
            assert _healthy(url) and process.poll() is None

            # a model name from a shared link is shown as typed in the sidebar and in the message
            page.goto(f"{url}/?model=__main__.EvilNet")
            _alert_with(page, "'__main__.EvilNet' does not exist")
            page.screenshot(path=str(ARTIFACTS / "security-4-link-name.png"), full_page=True)
            picker = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
            assert "__main__.EvilNet" in picker.inner_text() + (picker.locator("input").first.input_value()
                                                                if picker.locator("input").count() else "")
            assert page.locator("[role=alert] strong, [data-testid=stSidebar] strong").count() == 0

            # uploads over server.maxUploadSize (1 MB on this server) are refused before they are stored
            big = tmp_path / "big.pt"
            big.write_bytes(b"\0" * 2_000_000)
            if not page.get_by_role("tab", name="Upload a file").is_visible():
                page.get_by_text("Load another model").click()
            page.get_by_role("tab", name="Upload a file").click()
            page.locator("input[type=file]").first.set_input_files(str(big))
            page.get_by_text("File must be 1.0MB or smaller.").wait_for(state="attached")  # the file chip's tooltip
            assert page.get_by_role("button", name="Load the uploaded model").count() == 0
            page.screenshot(path=str(ARTIFACTS / "security-5-upload-limit.png"), full_page=True)
            uploads = home / "uploads"
            assert not uploads.exists() or not any(uploads.iterdir())
        finally:
            browser.close()
