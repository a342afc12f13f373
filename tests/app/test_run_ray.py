"""The Run page's backend: "ray" only where the server opted in ($MSA_APP_RAY, $MSA_RAY_ADDRESS), its accumulate
mode and units per task kept in the URL and checked with one line, and a launch on a local Ray whose values
equal a local run's (run this file under ``flock /tmp/ray.lock``: the last test starts Ray)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("streamlit")

from .test_pages import ROOT, _launch_and_wait, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures
from .test_run_memory import _launch_button, _open_with_errors  # noqa: E402
from .test_urls import _by_label, _open, _params  # noqa: E402

UNITS = "Units per task (optional)"
NOTICE = ("This link asks for the Ray backend, but this server does not offer it (its operator enables it with "
          "MSA_APP_RAY=1 or MSA_RAY_ADDRESS): the run computes locally, with the same values.")


@pytest.fixture()
def no_ray_opt_in(monkeypatch):
    monkeypatch.delenv("MSA_APP_RAY", raising=False)
    monkeypatch.delenv("MSA_RAY_ADDRESS", raising=False)


@pytest.fixture()
def ray_opt_in(monkeypatch):
    monkeypatch.delenv("MSA_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MSA_APP_RAY", "1")


def _labels(widgets) -> list[str]:
    return [w.label for w in widgets]


def _store_record(run_id: str):
    from msa_core.runs import RunStore

    return RunStore(os.environ["MSA_HOME"]).get(run_id)


def test_without_the_servers_opt_in_there_is_no_backend_and_a_ray_link_runs_locally(msa_home, no_ray_opt_in):
    at = _open("pages/run.py", {"model": "mlp-digits"})
    assert "Backend" not in _labels(at.radio) and UNITS not in _labels(at.text_input) and not at.warning
    link = {"model": "mlp-digits", "method": "permutation", "seed": "5", "backend": "ray",
            "ray_accumulate": "workers", "ray_units": "2"}
    at = _open("pages/run.py", link)
    assert [w.value for w in at.warning] == [NOTICE]
    assert "Backend" not in _labels(at.radio) and "Ray accumulate" not in _labels(at.radio)
    assert {k: _params(at)[k] for k in ("backend", "ray_accumulate", "ray_units")} == {
        "backend": "ray", "ray_accumulate": "workers", "ray_units": "2"}  # the link stays as it was
    _launch_and_wait(at, 150)
    record = _store_record(at.session_state["msa_run"])
    assert record.params["backend"] == "local" and "ray" not in record.result.metadata
    assert [s.value for s in at.success] == [f"Run {record.id[:8]} is ready. Computed locally."]


def test_with_the_opt_in_the_ray_settings_round_trip_and_bad_units_refuse_the_launch(msa_home, ray_opt_in):
    at = _open("pages/run.py", {"model": "mlp-digits", "method": "permutation"})
    backend = _by_label(at.radio, "Backend")
    assert backend.value == "local" and list(backend.options) == ["local", "ray"]
    assert "Ray accumulate" not in _labels(at.radio) and "backend" not in _params(at)
    backend.set_value("ray").run()
    _no_errors(at, "ray chosen")
    accumulate = _by_label(at.radio, "Ray accumulate")
    assert accumulate.value == "auto" and list(accumulate.options) == ["auto", "driver", "workers"]
    assert _params(at)["backend"] == "ray" and "ray_accumulate" not in _params(at)  # defaults stay out
    accumulate.set_value("workers").run()
    _by_label(at.text_input, UNITS).input("four").run()
    assert [e.value for e in at.error] == [
        "Units per task 'four': write a whole number from 1 to 1,000,000,000 (empty: automatic, four rounds over "
        "the workers)."]
    assert not at.exception and _launch_button(at).disabled
    _by_label(at.text_input, UNITS).input("0").run()
    assert len(at.error) == 1 and at.error[0].value.startswith("Units per task '0': ") and _launch_button(at).disabled
    _by_label(at.text_input, UNITS).input("16").run()
    _no_errors(at, "16 units per task")
    assert not _launch_button(at).disabled
    params = _params(at)
    assert {k: params[k] for k in ("backend", "ray_accumulate", "ray_units")} == {
        "backend": "ray", "ray_accumulate": "workers", "ray_units": "16"}
    again = _open("pages/run.py", params)  # a fresh session from the link: the same settings
    assert _by_label(again.radio, "Backend").value == "ray"
    assert _by_label(again.radio, "Ray accumulate").value == "workers"
    assert _by_label(again.text_input, UNITS).value == "16"
    _by_label(again.radio, "Ray accumulate").set_value("driver").run()  # the driver mode takes no units per task
    assert UNITS not in _labels(again.text_input) and "ray_units" not in _params(again)
    _by_label(again.selectbox, "Estimator").set_value("exact").run()  # not a sampling method: no mode to choose
    assert "Ray accumulate" not in _labels(again.radio) and "ray_accumulate" not in _params(again)
    assert any(c.value.startswith("**exact** is not a sampling method") for c in again.caption)
    bad = _open_with_errors({**params, "ray_units": "-3"})  # a bad link: one line, no launch
    assert [e.value for e in bad.error] == [
        "Units per task '-3': write a whole number from 1 to 1,000,000,000 (empty: automatic, four rounds over "
        "the workers)."]
    assert not bad.exception and _launch_button(bad).disabled
    from ui import run_ray

    assert run_ray.submit_options("ray", "workers", 16) == {
        "backend": "ray", "address": None, "ray_options": {"accumulate": "workers", "units_per_task": 16}}


def test_the_cluster_address_comes_from_the_servers_environment_only(msa_home, monkeypatch):
    from ui import run_ray

    monkeypatch.delenv("MSA_APP_RAY", raising=False)
    monkeypatch.setenv("MSA_RAY_ADDRESS", "10.0.0.7:6379")
    assert run_ray.submit_options("ray", "auto", None) == {
        "backend": "ray", "address": "10.0.0.7:6379", "ray_options": {"accumulate": "auto"}}
    assert run_ray.hide_address("could not connect to the Ray cluster at '10.0.0.7:6379'") == (
        "could not connect to the Ray cluster at '$MSA_RAY_ADDRESS'")
    at = _open("pages/run.py", {"model": "mlp-digits", "backend": "ray", "address": "evil:1"})
    assert _by_label(at.radio, "Backend").value == "ray"
    assert "address" not in _params(at)  # no page parameter takes an address: the link's is dropped
    monkeypatch.setattr(run_ray.importlib.util, "find_spec", lambda name: None)  # opted in, Ray not installed
    assert run_ray.server_ray()["offered"] is False and "Ray is not installed" in run_ray.server_ray()["note"]
    monkeypatch.undo()
    monkeypatch.delenv("MSA_RAY_ADDRESS", raising=False)
    assert run_ray.submit_options("ray", "auto", None) == {}  # no opt-in: local, whatever was asked


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on two CPUs, as tests/test_seams.py and tests/test_ray.py start it (left running)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    return ray


def test_a_launch_on_ray_equals_a_local_run_and_says_how_it_ran(msa_home, ray_opt_in, local_ray, tmp_path):
    import torch

    from msa_core.runs import RunSpec, RunStore, execute

    at = _open("pages/run.py", {"model": "mlp-digits", "method": "permutation", "seed": "11", "backend": "ray",
                                "ray_accumulate": "workers", "ray_units": "2"})
    _launch_and_wait(at, 800)  # 8 join orders: 2 rounds of 2 workers x 2 units
    record = _store_record(at.session_state["msa_run"])
    info = record.result.metadata["ray"]
    assert record.params["backend"] == "ray" and info["workers"] == 2
    assert info["accumulate"] == {"mode": "workers", "reason": "asked for", "units_per_task": 2, "on_disk": False}
    local = execute(RunSpec("mlp-digits", method="permutation", budget=800, seed=11), RunStore(tmp_path / "local"))
    assert local.id == record.id and local.result.n_evaluations == record.result.n_evaluations
    assert torch.allclose(record.result.values, local.result.values, rtol=0, atol=1e-12)
    assert torch.allclose(record.result.stderr, local.result.stderr, rtol=0, atol=1e-12)
    from msa_core.runs.jobs import JobStatus
    from ui.backend import progress_text

    assert progress_text(JobStatus(state="running", done=5, total=10, backend="ray")).startswith(
        "running on Ray: 5 / 10 evaluations")
    assert [s.value for s in at.success] == [
        f"Run {record.id[:8]} is ready. Computed on Ray: 2 workers, accumulated on the workers (2 units per task; "
        "asked for)."]
