"""Every page's settings are in the URL: set non-default values, take the query parameters, open them in a
fresh session (a new AppTest) and find the same values."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .test_pages import ROOT, _launch_and_wait, _no_errors, msa_home, runs  # noqa: E402,F401 - the module's fixtures


def _params(at: AppTest) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


URL_PATHS = {"pages/modes.py": "modes", "pages/lesion_curves.py": "curves", "pages/editor.py": "editor",
             "pages/run.py": "run", "pages/model.py": "model", "pages/findings.py": "findings"}


def _open(page: str, params: dict[str, str]) -> AppTest:
    """A fresh session whose very first run is ``page`` with these query parameters, as a link opens it
    (AppTest has no URL bar: its first-run page is chosen by the page's URL path hash)."""
    from streamlit.util import calc_hash

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at._page_hash = calc_hash(URL_PATHS[page])
    at.run()
    _no_errors(at, f"reopened {page}")
    return at


def _by_label(widgets, label):
    return next(w for w in widgets if w.label == label)


def test_modes_settings_round_trip(runs):
    at = _open("pages/modes.py", {"model": "mlp-digits", "run": runs["mlp-digits"]})
    _by_label(at.radio, "Order units by").set_value("index").run()
    _by_label(at.selectbox, "Bars show").set_value(3).run()
    _by_label(at.selectbox, "Unit").set_value(7).run()
    _no_errors(at, "modes")
    params = _params(at)
    assert params["order"] == "index" and params["output"] == "3" and params["unit"] == "7"
    again = _open("pages/modes.py", params)
    assert _by_label(again.radio, "Order units by").value == "index"
    assert _by_label(again.selectbox, "Bars show").value == 3
    assert _by_label(again.selectbox, "Unit").value == 7
    assert _params(again) == params


def test_image_modes_settings_round_trip(runs):
    at = _open("pages/modes.py", {"model": "dcgan-digits", "run": runs["dcgan-digits"]})
    _by_label(at.selectbox, "Image").set_value(1).run()
    _by_label(at.radio, "Colour scale").set_value("per-unit").run()
    _by_label(at.slider, "Units shown").set_value(6).run()
    params = _params(at)
    assert {params["image"], params["scale"], params["shown"]} == {"1", "per-unit", "6"}
    again = _open("pages/modes.py", params)
    assert _by_label(again.selectbox, "Image").value == 1
    assert _by_label(again.radio, "Colour scale").value == "per-unit"
    assert _by_label(again.slider, "Units shown").value == 6
    # the top-outputs table names every axis of an image output
    assert list(again.dataframe[0].value.columns[:4]) == ["input", "channel", "row", "column"]


def test_token_outputs_are_distinct_and_say_their_text(runs):
    from msa_core.runs import RunSpec, RunStore, execute

    import os

    word = "hello"  # two l: two outputs, two bars
    record = execute(RunSpec("moe-lm", objective=f"token log-prob:{word}", budget=10),
                     store=RunStore(os.environ["MSA_HOME"]))
    at = _open("pages/modes.py", {"model": "moe-lm", "run": record.id})
    box = _by_label(at.selectbox, "Bars show")
    shown = list(box.options)  # as the page formats them
    assert any(text.endswith("2:l") for text in shown) and any(text.endswith("3:l") for text in shown)
    assert len(set(shown)) == len(shown)
    assert any("hello" in info.value for info in at.info)


def test_lesion_curve_settings_round_trip(runs):
    at = _open("pages/lesion_curves.py", {"model": "mlp-digits", "run": runs["mlp-digits"]})
    _by_label(at.selectbox, "Objective").set_value("class probability").run()
    _by_label(at.multiselect, "Rankings shown").set_value(["shapley", "leave_one_out"]).run()
    _no_errors(at, "curves")
    params = _params(at)
    assert params["score_on"] == "class probability" and params["rankings"] == "shapley,leave_one_out"
    again = _open("pages/lesion_curves.py", params)
    assert _by_label(again.selectbox, "Objective").value == "class probability"
    assert _by_label(again.multiselect, "Rankings shown").value == ["shapley", "leave_one_out"]
    table = again.dataframe[0].value
    assert "AUC" in table.columns and len(table) == 3  # two rankings and the random orders


def test_editor_lesion_set_round_trip(runs):
    at = _open("pages/editor.py", {"model": "mlp-digits", "run": runs["mlp-digits"]})
    next(b for b in at.button if b.label.startswith("Lesion top-")).click().run()
    params = _params(at)
    assert len(params["lesioned"].split(",")) == 5
    again = _open("pages/editor.py", params)
    assert next(m for m in again.metric if m.label == "Lesioned units").value == "5"
    assert _params(again)["lesioned"] == params["lesioned"]


def test_model_page_at_slash_model_and_short_run_ids(runs):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["model"] = "mlp-digits"
    at.query_params["run"] = runs["mlp-digits"][:8]  # a short id in a link
    at.run()
    _no_errors(at, "short id")
    assert at.session_state["msa_run"] == runs["mlp-digits"]
    run_box = at.sidebar.selectbox[1]
    assert run_box.format_func(run_box.value).endswith(runs["mlp-digits"][:8]) and "·" in run_box.format_func(run_box.value)


def test_run_page_settings_round_trip_and_a_preset_with_topk_launches(msa_home):
    at = _open("pages/run.py", {"model": "mlp-digits"})
    estimator = _by_label(at.selectbox, "Estimator")
    assert all(": " in text for text in estimator.options)  # every method with its sentence
    _by_label(at.radio, "Units").set_value("hidden layer").run()
    estimator.set_value("topk").run()
    _by_label(at.number_input, "k (how many top units to settle)").set_value(3).run()
    _by_label(at.number_input, "Budget (game evaluations)").set_value(600).run()
    _by_label(at.number_input, "Seed").set_value(7).run()
    _no_errors(at, "run settings")
    params = _params(at)
    assert {k: params[k] for k in ("units", "method", "k", "budget", "seed")} == {
        "units": "hidden layer", "method": "topk", "k": "3", "budget": "600", "seed": "7"}
    expected = next(m for m in at.metric if m.label == "Expected time").value
    assert expected.endswith(" s")
    again = _open("pages/run.py", params)
    assert _by_label(again.radio, "Units").value == "hidden layer"
    assert _by_label(again.selectbox, "Estimator").value == "topk"
    assert _by_label(again.number_input, "k (how many top units to settle)").value == 3
    assert _by_label(again.number_input, "Budget (game evaluations)").value == 600
    _launch_and_wait(again, 600)
    from msa_core.runs import RunStore
    import os

    record = RunStore(os.environ["MSA_HOME"]).get(again.session_state["msa_run"])
    assert record.spec.preset == "hidden layer" and record.spec.method == "topk"
    assert dict(record.spec.options) == {"k": 3} and record.spec.budget == 600
