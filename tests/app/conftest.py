"""AppTest settings.

* One torch thread (the CPU is shared; small models run faster without OpenMP spinning).
* AppTest resets Streamlit's "legacy pages/ folder" flag before every run, so each run would execute
  the page script alone (a real server does that only for the very first request of the process, which
  ``ui.state.page_setup`` heals with one rerun). Keeping the flag off makes every AppTest run go through
  ``app.py`` as a real session does, with widget clicks intact.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _navigation_only(monkeypatch):
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
