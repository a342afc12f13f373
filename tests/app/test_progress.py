"""The Run page's progress line never reads "0 / 0 evaluations"."""

from msa_core.runs.jobs import JobStatus
from ui.backend import describe_run, progress_text


def test_progress_before_and_during_a_run():
    assert "0 / 0" not in progress_text(JobStatus(state="queued"))
    assert "loading the model" in progress_text(JobStatus(state="running", done=0, total=0))
    line = progress_text(JobStatus(state="running", done=250, total=1000, evals_per_s=500.0, eta_s=1.5))
    assert line == "running: 250 / 1,000 evaluations · 500 evaluations/s · 2 s left"
    assert "evaluations/s" not in progress_text(JobStatus(state="running", done=0, total=1000))


def test_a_run_is_named_by_label_budget_units_and_short_id():
    from types import SimpleNamespace

    from msa_core.runs import RunSpec

    record = SimpleNamespace(spec=RunSpec("mlp-digits", budget=400), label="", id="ab" * 32)
    assert describe_run(record) == "permutation · 400 evaluations · default units · abababab"
    assert describe_run(SimpleNamespace(spec=RunSpec("m", method="exact"), label="mine", id="c" * 64)).startswith("mine · exact")
