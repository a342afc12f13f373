"""Ray, accumulate on workers: workers return moments of their units, the driver merges them in unit order.

Run under ``flock /tmp/ray.lock``. Fixtures (one local Ray of 2 CPUs, the small recipe) are those of
tests/test_ray.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from msa_core import RunCancelled  # noqa: E402
from msa_core.estimators import GameRunner, make_estimator  # noqa: E402
from msa_core.runs import RunSpec, RunStore, execute, resolve  # noqa: E402
from msa_core.runs.ray_accumulate import accumulate_units, choose_accumulate  # noqa: E402

from .test_ray import _one_thread, local_ray, recipe  # noqa: E402,F401  (fixtures)

WORKERS = {"accumulate": "workers", "units_per_task": 6, "workers": 2}


def test_worker_returns_the_moments_of_its_units_not_samples(recipe):
    """What a worker sends back: mean and m2 ``(n_players, *output)`` of units [3, 8), equal to the moments
    of those units' samples computed locally, and the evaluations they cost."""
    spec = RunSpec(recipe, method="permutation", n_permutations=20, seed=5)
    resolved = resolve(spec)
    game = resolved.game()
    runner = GameRunner(game, game.n_players)
    empty, intact = runner.endpoints()
    part = accumulate_units(spec.to_dict(), resolved.key, 3, 8, empty.numpy(), intact.numpy(), None)
    n = game.n_players
    assert part["count"] == 5 and part["n_evaluations"] == 5 * (n - 1)
    arrays = [v for v in part.values() if isinstance(v, np.ndarray)]
    assert [a.shape for a in arrays] == [(n, *empty.shape)] * 2  # moments only: never (coalitions, *output)
    samples = make_estimator("permutation").unit_samples(runner, n, 5, range(3, 8), empty, intact)
    assert np.allclose(part["mean"], samples.mean(0).numpy(), rtol=0, atol=1e-13)
    assert np.allclose(part["m2"], ((samples - samples.mean(0)) ** 2).sum(0).numpy(), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="run key"):
        accumulate_units(spec.to_dict(), "0" * 64, 3, 8, empty.numpy(), intact.numpy(), None)


def test_the_default_mode_follows_the_method_and_the_output_size(recipe, monkeypatch):
    spec = RunSpec(recipe, method="permutation", n_permutations=100, seed=0)
    assert choose_accumulate(None, spec, 10, 20, 2, None)[0] == "driver"  # small output: bit-identical path
    mode, _reason, per_task = choose_accumulate(None, spec, 10, 50_000, 2, None)
    assert (mode, per_task) == ("workers", 13)  # 100 units, 2 workers, 4 rounds
    assert choose_accumulate(None, spec.replace(method="exact"), 10, 50_000, 2, None)[0] == "driver"
    monkeypatch.setenv("MSA_RAY_ACCUMULATE", "driver")
    assert choose_accumulate(None, spec, 10, 50_000, 2, None)[0] == "driver"
    assert choose_accumulate("workers", spec, 10, 20, 2, None)[0] == "workers"
    with pytest.warns(UserWarning, match="do not fit in its memory bound"):  # 2 x 8 MB moments, 64 MB bound
        assert choose_accumulate("workers", spec, 10, 10**5, 2, "64MB")[0] == "driver"
    with pytest.raises(ValueError, match="accumulate must be"):
        choose_accumulate("nodes", spec, 10, 20, 2, None)


@pytest.mark.slow
@pytest.mark.parametrize("method, n_permutations", [("permutation", 40), ("owen", 80)])
def test_workers_mode_equals_the_local_run(local_ray, recipe, tmp_path, method, n_permutations):
    spec = RunSpec(recipe, method=method, n_permutations=n_permutations, seed=7)
    local = execute(spec, RunStore(tmp_path / "local"))
    remote = execute(spec, RunStore(tmp_path / "ray"), backend="ray", ray_options=WORKERS)
    info = remote.result.metadata["ray"]
    assert info["accumulate"]["mode"] == "workers" and info["calls"] >= 2  # rounds of 2 x 6 units
    assert remote.id == local.id and remote.result.n_evaluations == local.result.n_evaluations
    # the merge tree differs from the local run's blocks: equal to rounding, not bit for bit
    assert torch.allclose(remote.result.values, local.result.values, rtol=0, atol=1e-12)
    assert torch.allclose(remote.result.stderr, local.result.stderr, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_workers_mode_cancelled_between_rounds_resumes_to_the_uninterrupted_values(local_ray, recipe, tmp_path):
    spec = RunSpec(recipe, method="permutation", n_permutations=40, seed=3)
    store = RunStore(tmp_path / "store")
    cancel = threading.Event()
    with pytest.raises(RunCancelled):  # the first round merges, then the flag stops the second
        execute(spec, store, cancel=cancel, checkpoint_interval=0.0, backend="ray", ray_options=WORKERS,
                progress=lambda done, total: cancel.set() if done > 2 else None)
    resumed = execute(spec, store, backend="ray", ray_options=WORKERS)
    assert resumed.params["resumed_from_unit"] == 12 and resumed.params["resumed_evaluations"] == 2 + 12 * 9
    reference = execute(spec, RunStore(tmp_path / "reference"), backend="ray", ray_options=WORKERS)
    assert torch.equal(resumed.result.values, reference.result.values)  # same rounds: bit for bit
    assert torch.equal(resumed.result.stderr, reference.result.stderr)
    assert resumed.result.n_evaluations == reference.result.n_evaluations


@pytest.mark.slow
def test_the_cli_flags_run_the_workers_mode(local_ray, recipe, tmp_path, monkeypatch, capsys):
    """``msa run --backend ray --ray-accumulate workers --ray-units-per-task R`` reaches execute's workers mode
    and stores the local run's values (to rounding) under the same run id."""
    from msa_core.cli import main

    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MSA_RAY_WORKERS", "2")
    assert main(["run", recipe, "--method", "permutation", "--permutations", "24", "--seed", "3",
                 "--backend", "ray", "--ray-accumulate", "workers", "--ray-units-per-task", "4"]) == 0
    (record,) = RunStore(tmp_path / "home").list()
    accumulate = record.result.metadata["ray"]["accumulate"]
    assert accumulate["mode"] == "workers" and accumulate["units_per_task"] == 4
    local = execute(RunSpec(recipe, method="permutation", n_permutations=24, seed=3), RunStore(tmp_path / "local"))
    assert record.id == local.id
    assert torch.allclose(record.result.values, local.result.values, rtol=0, atol=1e-12)
