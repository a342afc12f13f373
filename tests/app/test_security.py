"""AppTest: what a browser user types into the Model page's "Path, recipe or Hugging Face folder" box cannot
stop, hang or take over the server. Refused recipes give one message; recipes the operator allowed may raise
anything (SystemExit, KeyboardInterrupt, RecursionError, MemoryError) and the page shows one message."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import torch  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

RAISING = """
import sys
import torch
from torch import nn

def leaves():
    sys.exit(0)

def interrupts():
    raise KeyboardInterrupt

def recurses():
    return recurses()

def exhausts():
    raise MemoryError

class ExitsInForward(nn.Module):
    def forward(self, x):
        exit(1)

def forward_exits():
    return ExitsInForward(), torch.zeros(2, 3)
"""


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    """Own run store; no recipe opt-in unless a test sets one; caches cleared around the test."""
    import streamlit as st

    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MSA_RECIPE_DIRS", raising=False)
    monkeypatch.delenv("MSA_RECIPE_MODULES", raising=False)
    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


def _load(ref: str, model: str = "mlp-digits") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["model"] = model
    at.run()
    at.text_input(key="model_ref_input").input(ref).run()
    next(b for b in at.button if b.label == "Load").click().run()
    return at


def _one_message(at: AppTest, *needles: str) -> str:
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert at.session_state["msa_model"] == "mlp-digits", "a failed load must keep the previous model"
    return errors[0]


@pytest.mark.parametrize("ref", ["os:abort", "builtins:exit", "os:system"])
def test_typed_module_recipes_are_refused(app_env, ref, monkeypatch):
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a) or 0)
    monkeypatch.setattr(os, "abort", lambda *a: called.append(a))
    at = _load(ref)
    _one_message(at, "refused to run the recipe", "MSA", "RECIPE", "MODULES")
    assert not called
    assert "Model" in [t.value for t in at.title]  # the page went on rendering


def test_recipe_in_the_url_is_refused(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["model"] = "os:abort"
    at.run()
    assert not at.exception
    assert any("refused to run the recipe" in e.value for e in at.error)


@pytest.mark.parametrize("function, needle", [
    ("leaves", "SystemExit"),
    ("interrupts", "KeyboardInterrupt"),
    ("recurses", "RecursionError"),
    ("exhausts", "MemoryError"),
    ("forward_exits", "SystemExit"),
])
def test_allowed_recipes_that_raise_anything_give_one_message(app_env, monkeypatch, function, needle):
    folder = app_env / "recipes"
    folder.mkdir()
    (folder / "raising.py").write_text(textwrap.dedent(RAISING))
    monkeypatch.setenv("MSA_RECIPE_DIRS", str(folder))
    limit = sys.getrecursionlimit()
    _one_message(_load(f"{folder / 'raising.py'}:{function}"), needle)
    assert sys.getrecursionlimit() == limit


def test_pickled_class_name_is_shown_escaped(app_env):
    from torch import nn

    class EvilNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    EvilNet.__module__ = "__main__"
    EvilNet.__qualname__ = "EvilNet"
    sys.modules["__main__"].EvilNet = EvilNet
    path = app_env / "evil.pt"
    try:
        torch.save(EvilNet(), path)
    finally:
        del sys.modules["__main__"].EvilNet
    message = _one_message(_load(str(path)), "pickled Python object")
    # Markdown source: every underscore escaped, so the page shows "__main__.EvilNet" as typed (no bold "main")
    assert r"\_\_main\_\_.EvilNet" in message


def test_streamlit_control_flow_passes_through_shown():
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException, StopException

    from ui.errors import shown

    with pytest.raises(StopException):
        with shown("stopping"):
            raise StopException()
    with pytest.raises(RerunException):
        with shown("rerunning"):
            raise RerunException(None)


def test_server_settings_watch_nothing_and_listen_on_localhost():
    """The shipped settings: no file watcher (the inotify flood), localhost only, bounded uploads, no tracebacks;
    ``./run.sh app`` passes the same watcher and address unless MSA_FILE_WATCHER / MSA_ADDRESS say otherwise."""
    import tomllib

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["fileWatcherType"] == "none"
    assert settings["server"]["address"] == "localhost"
    assert 0 < settings["server"]["maxUploadSize"] <= 200
    assert settings["client"]["showErrorDetails"] == "none"
    script = (ROOT / "run.sh").read_text()
    assert '--server.fileWatcherType "${MSA_FILE_WATCHER:-none}"' in script
    assert '--server.address "${MSA_ADDRESS:-localhost}"' in script
