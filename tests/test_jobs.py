"""The background job runner: progress, rate and ETA, cancel and resume, de-duplication, failures."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from msa_core.runs import JobRunner, RunSpec, RunStore, execute, run_key

ROOT = Path(__file__).resolve().parents[1]

RECIPE = textwrap.dedent(
    '''
    import time
    import torch
    from torch import nn

    class Slow(nn.Module):
        """Identity that sleeps `delay` seconds per call on coalition batches (not part of the weights)."""
        delay = 0.0
        calls = 0
        def forward(self, x):
            if x.shape[0] > 8:
                Slow.calls += 1
                if Slow.delay:
                    time.sleep(Slow.delay)
            return x

    class Boom(nn.Module):
        def forward(self, x):
            if bool((x == 0).all(dim=-1).any()):
                raise RuntimeError("boom: the model broke")
            return x

    def _base(middle):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), middle, nn.Linear(16, 3))
        return {"model": model, "inputs": torch.randn(8, 6), "default_units": ["1"]}

    def make():
        return _base(Slow())

    def make_boom():
        return _base(Boom())

    def make_wide():
        """float64 and 8 x 250 outputs: under a 2 MB bound a permutation run streams to disk."""
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), Slow(), nn.Linear(16, 250)).double()
        return {"model": model, "inputs": torch.randn(8, 6, dtype=torch.float64), "default_units": ["1"]}
    '''
)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs tiny models: one torch thread (see conftest)."""


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "job_recipe.py"
    path.write_text(RECIPE)
    return path


def _slow_class(recipe: Path):
    modules = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(recipe)]
    return modules[-1].Slow


@pytest.fixture()
def runner(tmp_path: Path):
    jobs = JobRunner(RunStore(tmp_path / "store"), checkpoint_interval=0.0)
    yield jobs
    jobs.shutdown()


def test_job_runs_in_the_background_and_is_stored(recipe, runner):
    spec = RunSpec(f"{recipe}:make", n_permutations=30, seed=4)
    job = runner.submit(spec)
    status = runner.wait(job, timeout=60)
    assert status.state == "done", status.error
    assert status.run_id == run_key(spec) and status.done == status.total == 2 + 30 * 15
    assert status.eta_s == 0.0 and status.fraction == 1.0
    record = runner.store.get(status.run_id)
    assert record is not None and record.result.values.shape == (16, 8, 3)
    # asking again: done at once from the store, no computation
    again = runner.submit(spec)
    assert again != job and runner.status(again).state == "done" and runner.status(again).cached
    assert [s.job_id for s in runner.jobs()] == [job, again]


def test_progress_rate_eta_cancel_and_resume(recipe, runner, tmp_path):
    spec = RunSpec(f"{recipe}:make", n_permutations=1000, seed=6, batch_size=32)
    job = runner.submit(spec)
    slow = _slow_class(recipe)
    slow.delay = 0.01
    try:
        deadline = time.monotonic() + 60
        status = runner.status(job)
        while not (status.state == "running" and status.done > 256 * 15 + 200 and status.evals_per_s > 0):
            assert status.state in ("queued", "running"), status
            assert time.monotonic() < deadline
            time.sleep(0.05)
            status = runner.status(job)
        assert status.total == 2 + 1000 * 15 and 0 < status.done < status.total
        assert status.eta_s is not None and status.eta_s > 0
        assert runner.cancel(job)
        status = runner.wait(job, timeout=30)
    finally:
        slow.delay = 0.0
    assert status.state == "cancelled"
    assert runner.store.get(status.run_id) is None and runner.store.has_checkpoint(status.run_id)
    assert not runner.cancel(job)  # nothing left to cancel
    # submitting it again resumes from the checkpoint and equals an uninterrupted run
    resumed = runner.wait(runner.submit(spec), timeout=60)
    assert resumed.state == "done", resumed.error
    record = runner.store.get(resumed.run_id)
    assert record.params["resumed_from_unit"] >= 256
    reference = execute(spec, RunStore(tmp_path / "reference"))
    assert torch.equal(record.result.values, reference.result.values)


def test_same_run_submitted_twice_concurrently_is_computed_once(recipe, runner):
    spec = RunSpec(f"{recipe}:make", n_permutations=300, seed=8, batch_size=64)
    first = runner.submit(spec)
    slow = _slow_class(recipe)
    slow.delay = 0.005
    try:
        second = runner.submit(spec.replace(label="again", batch_size=16))  # same run key
        assert second == first
        other = runner.submit(spec.replace(seed=9))  # another run: another job, queued behind
        assert other != first
        assert runner.status(other).state in ("queued", "running")
        assert runner.wait(first, timeout=60).state == "done"
        assert runner.wait(other, timeout=60).state == "done"
    finally:
        slow.delay = 0.0
    assert len(runner.store.list()) == 2


def test_failures_are_reported_not_raised(recipe, runner):
    job = runner.submit(RunSpec(f"{recipe}:make_boom", n_permutations=4))
    status = runner.wait(job, timeout=30)
    assert status.state == "failed" and "boom" in status.error and "\n" not in status.error
    assert runner.store.list() == []
    with pytest.raises(ValueError, match="objective"):  # a bad spec is refused at submit
        runner.submit(RunSpec(f"{recipe}:make", objective="nope"))
    with pytest.raises(KeyError):
        runner.status("job-unknown")


def test_cancel_a_queued_job(recipe, runner):
    slow_spec = RunSpec(f"{recipe}:make", n_permutations=400, seed=1, batch_size=16)
    first = runner.submit(slow_spec)
    slow = _slow_class(recipe)
    slow.delay = 0.01
    try:
        queued = runner.submit(slow_spec.replace(seed=2))
        assert runner.status(queued).state == "queued"
        assert runner.cancel(queued)
        assert runner.status(queued).state == "cancelled"
        runner.cancel(first)
        assert runner.wait(first, timeout=30).state in ("cancelled", "done")
    finally:
        slow.delay = 0.0


def test_a_bounded_job_streams_to_disk_cancels_and_resumes_to_the_unbounded_values(recipe, runner, tmp_path):
    spec = RunSpec(f"{recipe}:make_wide", n_permutations=120, seed=3)
    job = runner.submit(spec, max_memory="2MB")
    slow = _slow_class(recipe)
    slow.delay = 0.01
    try:
        deadline = time.monotonic() + 60
        status = runner.status(job)
        while not (status.state == "running" and status.done > 2 + 15 * 10):
            assert status.state in ("queued", "running"), status
            assert time.monotonic() < deadline
            time.sleep(0.05)
            status = runner.status(job)
        assert status.max_memory == 2 * 2**20 and status.on_disk is None  # not done: nowhere yet
        assert runner.cancel(job)
        status = runner.wait(job, timeout=30)
    finally:
        slow.delay = 0.0
    assert status.state == "cancelled" and runner.store.has_checkpoint(status.run_id)
    resumed = runner.wait(runner.submit(spec, max_memory="2MB"), timeout=60)
    assert resumed.state == "done", resumed.error
    assert resumed.on_disk is True and resumed.memory["mode"] == "stream" and resumed.memory["on_disk"]
    record = runner.store.get(resumed.run_id)
    assert record.params["resumed_from_unit"] >= 10 and record.result.on_disk
    reference = execute(spec, RunStore(tmp_path / "reference"))  # unbounded, in memory
    assert not reference.result.on_disk
    assert torch.allclose(record.result.values.to_tensor(), reference.result.values, rtol=0, atol=1e-12)
    assert torch.allclose(record.result.stderr.to_tensor(), reference.result.stderr, rtol=0, atol=1e-12)
    again = runner.status(runner.submit(spec))  # from the store: still says where it is
    assert again.cached and again.on_disk is True


def test_job_options_come_from_the_runner_or_submit_and_are_checked(recipe, tmp_path):
    runner = JobRunner(RunStore(tmp_path / "store"), max_memory="64MB")
    try:
        spec = RunSpec(f"{recipe}:make", n_permutations=3, seed=1)
        done = runner.wait(runner.submit(spec), timeout=60)
        assert done.state == "done" and done.max_memory == 64 * 2**20 and done.backend == "local"
        assert done.on_disk is False and done.memory["mode"] == "blocks"
        assert runner.status(runner.submit(spec.replace(seed=2), max_memory="32MB")).max_memory == 32 * 2**20
        with pytest.raises(ValueError, match="not a size"):
            runner.submit(spec, max_memory="lots")
        with pytest.raises(ValueError, match="at least 1 MB"):
            runner.submit(spec, max_memory="10KB")
        topk = runner.wait(runner.submit(spec.replace(method="topk", options={"k": 2})), timeout=60)
        assert topk.state == "done" and topk.max_memory == 64 * 2**20  # the runner's bound applies to topk too
        with pytest.raises(ValueError, match="only used with backend 'ray'"):
            runner.submit(spec, ray_options={"accumulate": "workers"})
        with pytest.raises(ValueError, match="accumulate must be one of workers, driver, auto"):
            runner.submit(spec, backend="ray", ray_options={"accumulate": "everywhere"})
        with pytest.raises(ValueError, match="unknown ray option 'cores'"):
            runner.submit(spec, backend="ray", ray_options={"cores": 2})
        with pytest.raises(ValueError, match="units_per_task must be a positive integer"):
            runner.submit(spec, backend="ray", ray_options={"units_per_task": 0})
        with pytest.raises(ValueError, match="unknown backend 'gpu'"):
            runner.submit(spec, backend="gpu")
    finally:
        runner.shutdown()
    with pytest.raises(ValueError, match="only used with backend 'ray'"):
        JobRunner(RunStore(tmp_path / "other"), ray_options={"workers": 2})
