"""The Run page's memory bound: kept in the URL, checked with a one-line message, shown in the plan (in memory
or streamed to disk), and handed to the job runner (a bounded run's values end up on disk)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("streamlit")

from .test_pages import _launch_and_wait, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures
from .test_urls import URL_PATHS, _by_label, _open, _params  # noqa: E402

BOUND = "Memory bound (optional)"


def _open_with_errors(params: dict[str, str]):
    """The Run page opened from a link, as :func:`_open` does, but with its error messages left to the test."""
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    from .test_pages import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    at._page_hash = calc_hash(URL_PATHS["pages/run.py"])
    return at.run()


def _launch_button(at):
    return next(b for b in at.button if b.label == "Launch the run")


def test_a_memory_bound_round_trips_in_the_url_streams_to_disk_and_reaches_the_run(msa_home):
    at = _open("pages/run.py", {"model": "dcgan-digits", "method": "permutation", "budget": "64"})
    assert any(c.value.startswith("automatic: ") for c in at.caption)  # empty: the automatic figure
    assert "max_memory" not in _params(at)
    _by_label(at.text_input, BOUND).input("4MB").run()
    _no_errors(at, "a 4 MB bound")
    assert _params(at)["max_memory"] == "4MB"
    assert any(i.value == "Memory: streams one sample at a time within 4.0 MB; accumulators and result on disk."
               for i in at.info)
    again = _open("pages/run.py", _params(at))  # a fresh session from the link
    assert _by_label(again.text_input, BOUND).value == "4MB"
    _launch_and_wait(again, 64)
    from msa_core.runs import RunStore

    record = RunStore(os.environ["MSA_HOME"]).get(again.session_state["msa_run"])
    assert record.result.on_disk and record.result.metadata["memory"]["max_memory"] == 4 * 2**20
    assert any("Its values stay on disk" in s.value for s in again.success)


def test_a_bad_or_refused_memory_bound_is_one_clear_line_and_launches_nothing(msa_home):
    at = _open_with_errors({"model": "dcgan-digits", "method": "permutation", "budget": "64", "max_memory": "lots"})
    assert [e.value for e in at.error] == [
        "Memory bound 'lots': not a size; write e.g. 4GB, 512MB or 2.5G (empty: automatic)."]
    assert not at.exception and _launch_button(at).disabled and _params(at)["max_memory"] == "lots"
    _by_label(at.text_input, BOUND).input("10KB").run()
    assert [e.value for e in at.error] == ["Memory bound '10KB': it must be at least 1 MB."]
    _by_label(at.text_input, BOUND).input("1MB").run()  # a size, but too small for 32 x 32 images
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Memory: cannot run within 1.0 MB: ") and "\n" not in errors[0]
    assert "too small for outputs of 32768 values" in errors[0] and _launch_button(at).disabled
    _by_label(at.selectbox, "Estimator").set_value("topk").run()  # topk streams too: the same one-line refusal
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "too small for outputs of 32768 values" in errors[0] and _launch_button(at).disabled
    _by_label(at.text_input, BOUND).input("").run()  # empty: automatic, and topk launches again
    _no_errors(at, "no bound")
    assert not _launch_button(at).disabled and "max_memory" not in _params(at)
