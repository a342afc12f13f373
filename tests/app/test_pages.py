"""AppTest: every page renders with no exception, with and without a run; model choice and run launch flows;
bad input gives a message, not a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ..games_for_tests import save_torchscript_and_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["pages/model.py", "pages/run.py", "pages/modes.py", "pages/lesion_curves.py", "pages/editor.py",
         "pages/findings.py"]


@pytest.fixture(scope="module")
def msa_home(tmp_path_factory):
    """One run store for the module (the app's cached store is process-wide)."""
    home = tmp_path_factory.mktemp("msa_home")
    old = os.environ.get("MSA_HOME")
    os.environ["MSA_HOME"] = str(home)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield home
    st.cache_resource.clear()
    st.cache_data.clear()
    if old is None:
        os.environ.pop("MSA_HOME", None)
    else:
        os.environ["MSA_HOME"] = old


@pytest.fixture(scope="module")
def runs(msa_home):
    """Small runs of three kinds of built-in models: classes, images, languages."""
    from msa_core.runs import RunSpec, RunStore, execute

    store = RunStore(str(msa_home))
    return {
        "mlp-digits": execute(RunSpec("mlp-digits", budget=400), store=store).id,
        "dcgan-digits": execute(RunSpec("dcgan-digits", budget=40), store=store).id,
        "moe-lm": execute(RunSpec("moe-lm", budget=20), store=store).id,
    }


def _app(model: str | None = None, run: str | None = None, inputs: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    if model:
        at.query_params["model"] = model
    if inputs:
        at.query_params["inputs"] = inputs
    if run:
        at.query_params["run"] = run
    return at


def _no_errors(at: AppTest, page: str) -> None:
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"


def test_every_page_renders_without_a_run(msa_home):
    at = _app("mlp-digits").run()
    _no_errors(at, "app")
    for page in PAGES:
        at.switch_page(page).run()
        _no_errors(at, page)
    assert at.query_params["model"] == ["mlp-digits"] or at.query_params["model"] == "mlp-digits"


@pytest.mark.parametrize("model", ["mlp-digits", "dcgan-digits", "moe-lm"])
def test_every_page_renders_with_a_run(runs, model):
    at = _app(model, runs[model]).run()
    _no_errors(at, "app")
    # lesion curves of the image and language games take several seconds: checked on the MLP only
    for page in PAGES if model == "mlp-digits" else [p for p in PAGES if "curves" not in p]:
        at.switch_page(page).run()
        _no_errors(at, f"{model} {page}")
    assert at.session_state["msa_run"] == runs[model]


def test_model_choice_in_the_sidebar_switches_the_model(msa_home):
    at = _app("mlp-digits").run()
    box = at.sidebar.selectbox[0]
    box.set_value(("mlp-digits-l1", None)).run()  # (model, inputs file): built-ins need no inputs file
    _no_errors(at, "model choice")
    assert at.session_state["msa_model"] == "mlp-digits-l1"
    assert at.session_state["msa_run"] is None
    assert any("mlp-digits-l1" == h.value for h in at.subheader)  # the Model page now shows it


def test_launching_a_run_finishes_and_selects_it(msa_home):
    at = _app("mlp-digits-l2")
    at.switch_page("pages/run.py").run()
    _no_errors(at, "run page")
    _launch_and_wait(at, 300)
    at.switch_page("pages/modes.py").run()
    _no_errors(at, "modes of the new run")


def test_editor_presets_change_the_output(runs):
    at = _app("mlp-digits", runs["mlp-digits"])
    at.switch_page("pages/editor.py").run()
    _no_errors(at, "editor")

    def metric(label):
        return next(m for m in at.metric if m.label == label).value

    assert metric("Lesioned units") == "0"
    assert float(metric("Output change")) == 0.0
    next(b for b in at.button if b.label.startswith("Lesion top-")).click().run()
    _no_errors(at, "top-k")
    assert metric("Lesioned units") == "5"
    assert float(metric("Output change")) > 0
    next(b for b in at.button if b.label == "Clear").click().run()
    assert metric("Lesioned units") == "0"
    assert float(metric("Output change")) == 0.0


def test_bad_model_reference_shows_a_message(msa_home, tmp_path):
    bogus = tmp_path / "not_a_model.pt"
    bogus.write_bytes(b"this is not a model")
    at = _app("mlp-digits").run()
    at.text_input(key="model_ref_input").input(str(bogus)).run()
    next(b for b in at.button if b.label == "Load").click().run()
    assert not at.exception
    assert at.error, "no message for a file that is not a model"
    assert at.session_state["msa_model"] == "mlp-digits"


def test_unknown_model_in_the_url_shows_a_message(msa_home):
    at = _app("no-such-model").run()
    assert not at.exception
    assert at.error
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception, page


def test_unknown_run_in_the_url_is_harmless(msa_home):
    at = _app("mlp-digits", "0" * 64).run()
    assert not at.exception
    at.switch_page("pages/modes.py").run()
    assert not at.exception


def _launch_and_wait(at: AppTest, budget: int) -> None:
    next(n for n in at.number_input if n.label.startswith("Budget")).set_value(budget).run()
    next(b for b in at.button if b.label == "Launch the run").click().run()
    _no_errors(at, "launch")
    deadline = time.time() + 60
    while at.session_state["msa_run"] is None and time.time() < deadline:
        time.sleep(0.3)
        at.run()
    _no_errors(at, "after the run")
    assert at.session_state["msa_run"], "the run did not finish"


def test_torchscript_model_with_an_inputs_file_loads_runs_and_reopens_from_the_url(msa_home, tmp_path):
    _, pt, npz = save_torchscript_and_inputs(tmp_path)
    at = _app("mlp-digits").run()
    # without inputs: a clear message, and the previous model stays
    at.text_input(key="model_ref_input").input(str(pt)).run()
    next(b for b in at.button if b.label == "Load").click().run()
    assert not at.exception
    assert any("needs example inputs" in e.value for e in at.error)
    assert at.session_state["msa_model"] == "mlp-digits"
    # with inputs: loaded, in the URL, and its per-class accuracy objective comes from the labels
    at.text_input(key="model_inputs_input").input(str(npz)).run()
    next(b for b in at.button if b.label == "Load").click().run()
    _no_errors(at, "load with inputs")
    assert at.session_state["msa_model"] == str(pt) and at.session_state["msa_inputs"] == str(npz.resolve())
    assert at.query_params["inputs"] in ([str(npz.resolve())], str(npz.resolve()))
    assert any("10 evaluation inputs" in c.value for c in at.caption)
    assert next(m for m in at.metric if m.label == "Weights").value == "57"  # 5*6 + 6 + 6*3 + 3 (now buffers)
    assert at.sidebar.selectbox[0].format_func(at.sidebar.selectbox[0].value) == f"{pt.name} + {npz.name}"
    at.switch_page("pages/run.py").run()
    _no_errors(at, "run page")
    _launch_and_wait(at, 30)
    from msa_core.runs import RunStore

    record = RunStore(str(msa_home)).get(at.session_state["msa_run"])
    assert record.spec.model == str(pt) and record.spec.inputs == str(npz.resolve())
    for page in PAGES[2:4] + PAGES[4:5]:  # modes, lesion curves, editor of the new run
        at.switch_page(page).run()
        _no_errors(at, page)
    # a link with model, inputs and run reopens the same view in a fresh session
    again = _app(str(pt), record.id, inputs=str(npz.resolve())).run()
    _no_errors(again, "reopened")
    assert again.session_state["msa_run"] == record.id
    assert again.sidebar.selectbox[0].value == (str(pt), str(npz.resolve()))
