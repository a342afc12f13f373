"""Ray, accumulate on workers: workers return moments of their units, the driver merges them in unit order.

Run under ``flock /tmp/ray.lock``. Fixtures (one local Ray of 2 CPUs, the small recipe) are those of
tests/test_ray.py."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from msa_core import RunCancelled  # noqa: E402
from msa_core.estimators import GameRunner, make_estimator  # noqa: E402
from msa_core.memory import parse_memory  # noqa: E402
from msa_core.runs import RunSpec, RunStore, execute, resolve  # noqa: E402
from msa_core.runs.ray_accumulate import accumulate_units, choose_accumulate  # noqa: E402

from .test_ray import _one_thread, local_ray, recipe  # noqa: E402,F401  (fixtures)

WORKERS = {"accumulate": "workers", "units_per_task": 6, "workers": 2}

WIDE = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 400), nn.Tanh())
    return {"model": model, "inputs": torch.randn(5, 6), "default_units": ["1"]}
"""


@pytest.fixture()
def wide_recipe(tmp_path):
    """10 players, 2,000 outputs per coalition: mean and m2 (312 KB) do not fit a worker's 1 MB bound."""
    path = tmp_path / "wide_recipe.py"
    path.write_text(WIDE)
    return f"{path}:make"


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
    assert choose_accumulate(None, spec, 10, 20, 2, None)["mode"] == "driver"  # small output: bit-identical path
    chosen = choose_accumulate(None, spec, 10, 50_000, 2, None)
    assert (chosen["mode"], chosen["units_per_task"], chosen["on_disk"]) == ("workers", 13, False)  # 100 units, 2 x 4
    assert choose_accumulate(None, spec.replace(method="exact"), 10, 50_000, 2, None)["mode"] == "driver"
    monkeypatch.setenv("MSA_RAY_ACCUMULATE", "driver")
    assert choose_accumulate(None, spec, 10, 50_000, 2, None)["mode"] == "driver"
    assert choose_accumulate("workers", spec, 10, 20, 2, None)["mode"] == "workers"
    with warnings.catch_warnings():  # 2 x 8 MB moments over a 64 MB bound: on disk, no fallback warning
        warnings.simplefilter("error")
        chosen = choose_accumulate("workers", spec, 10, 10**5, 2, "64MB")
    assert (chosen["mode"], chosen["on_disk"]) == ("workers", True) and "kept on disk" in chosen["reason"]
    with pytest.warns(UserWarning, match="accumulating on the driver: max_memory=64.0 MB is too small"):
        assert choose_accumulate("workers", spec, 10, 10**7, 2, "64MB")["mode"] == "driver"  # one row: 80 MB
    with pytest.raises(ValueError, match="accumulate must be"):
        choose_accumulate("nodes", spec, 10, 20, 2, None)


def test_a_resumed_run_keeps_the_checkpoints_units_per_task(recipe):
    """A workers-mode checkpoint's rounds start at multiples of its units per task: a resume keeps them
    (warning where another was asked for) rather than merging another tree."""
    spec = RunSpec(recipe, method="permutation", n_permutations=100, seed=0)
    with pytest.warns(UserWarning, match="checkpoint's units_per_task=6 \\(asked for 4\\)"):
        assert choose_accumulate("workers", spec, 10, 20, 2, None, 4, recorded=6)["units_per_task"] == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing asked for: the recorded value, silently
        assert choose_accumulate("workers", spec, 10, 20, 2, None, recorded=6)["units_per_task"] == 6
    with pytest.raises(ValueError, match="units_per_task must be a positive"):
        choose_accumulate("workers", spec, 10, 20, 2, None, 0)


def test_a_worker_over_its_bound_returns_a_path_and_the_driver_merges_range_by_range(wide_recipe, tmp_path,
                                                                                     monkeypatch):
    """Without Ray: two workers' parts of a 1 MB-bounded run go on disk (only paths come back); the
    driver's range-by-range merge equals the local bounded run to 1e-12 and never reads a whole moment."""
    from msa_core.accumulate import MomentAccumulator
    from msa_core.ondisk import ChunkedArray
    from msa_core.runs.ray_disk import merge_bytes, merge_part, parts_folder, to_disk

    spec = RunSpec(wide_recipe, method="permutation", n_permutations=12, seed=5)
    resolved = resolve(spec)
    game = resolved.game()
    n, (empty, intact) = game.n_players, GameRunner(game, game.n_players).endpoints()
    folder = parts_folder(tmp_path / "scratch", resolved.key)
    parts = [accumulate_units(spec.to_dict(), resolved.key, a, b, empty.numpy(), intact.numpy(), 2**20, str(folder))
             for a, b in [(0, 5), (5, 12)]]
    assert [p["count"] for p in parts] == [5, 7]
    assert not any(isinstance(v, np.ndarray) for p in parts for v in p.values())  # paths, not moments
    assert [p["n_evaluations"] for p in parts] == [5 * (n - 1), 7 * (n - 1)]
    first, second = ({"count": p["count"], **{k: ChunkedArray(Path(p["path"]) / k).numpy() for k in ("mean", "m2")}}
                     for p in parts)
    reads = []
    original = ChunkedArray.read_rows
    monkeypatch.setattr(ChunkedArray, "read_rows", lambda self, rows: reads.append(original(self, rows).nbytes) or
                        original(self, rows))
    chunk = merge_bytes(2**20, empty.numel())
    target = to_disk(MomentAccumulator(), (n, *empty.shape), tmp_path / "driver", chunk)
    for part in parts:
        merge_part(target, part, chunk)
    whole = n * empty.numel() * 8
    assert target.count == 12 and 0 < max(reads) <= chunk < whole  # never a whole (n, *output) moment
    # a resumed in-memory checkpoint moved to disk, then a part merged: the same moments
    moved = to_disk(MomentAccumulator(5, torch.from_numpy(first["mean"]), torch.from_numpy(first["m2"])),
                    (n, *empty.shape), tmp_path / "moved", chunk)
    merge_part(moved, second, chunk)  # a worker whose moments fitted: arrays, merged range by range too
    assert moved.count == 12 and np.array_equal(moved.mean.numpy(), target.mean.numpy())
    assert np.array_equal(moved.m2.numpy(), target.m2.numpy())
    assert not any(Path(p["path"]).exists() for p in parts)  # merged parts are deleted
    local = execute(spec, RunStore(tmp_path / "local"), max_memory="1MB").result
    assert local.on_disk
    assert np.allclose(target.mean.numpy(), local.values.numpy(), rtol=0, atol=1e-12)
    stderr = np.sqrt(target.m2.numpy() / 11 / 12)
    assert np.allclose(stderr, local.stderr.numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="gave no folder"):
        accumulate_units(spec.to_dict(), resolved.key, 0, 2, empty.numpy(), intact.numpy(), 2**20, None)
    (tmp_path / "blind").mkdir()  # a folder without the driver's marker: another machine's disk
    with pytest.raises(ValueError, match="not visible on this worker.*shared filesystem"):
        accumulate_units(spec.to_dict(), resolved.key, 0, 2, empty.numpy(), intact.numpy(), 2**20,
                         str(tmp_path / "blind"))
    with pytest.raises(ValueError, match="not readable on the driver.*shared filesystem"):
        merge_part(target, {"count": 5, "path": str(tmp_path / "gone")}, chunk)


def test_the_driver_checks_that_every_worker_sees_the_parts_folder(tmp_path):
    from msa_core.runs.ray_disk import parts_folder, read_marker, visibility_problem

    folder = parts_folder(tmp_path, "ab" * 32)

    class Worker:
        def __init__(self, token):
            self.probe = type("Remote", (), {"remote": staticmethod(lambda path: (token, "node-b"))})()

    class Game:
        def __init__(self, *tokens):
            self.workers = [Worker(t) for t in tokens]

        def wait(self, refs):
            return refs

    token = read_marker(folder)
    assert token and visibility_problem(Game(token, token), folder) is None
    problem = visibility_problem(Game(token, None), folder)
    assert f"{folder}" in problem and "node-b (worker 1)" in problem and "shared filesystem" in problem


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
    assert store.load_checkpoint(resolve(spec).key)[1]["ray_accumulate"]["units_per_task"] == 6  # recorded
    with pytest.warns(UserWarning, match="checkpoint's units_per_task=6 \\(asked for 4\\)"):
        resumed = execute(spec, store, backend="ray", ray_options={**WORKERS, "units_per_task": 4})
    assert resumed.params["resumed_from_unit"] == 12 and resumed.params["resumed_evaluations"] == 2 + 12 * 9
    assert resumed.result.metadata["ray"]["accumulate"]["units_per_task"] == 6
    reference = execute(spec, RunStore(tmp_path / "reference"), backend="ray", ray_options=WORKERS)
    assert torch.equal(resumed.result.values, reference.result.values)  # the checkpoint's rounds: bit for bit
    assert torch.equal(resumed.result.stderr, reference.result.stderr)
    assert resumed.result.n_evaluations == reference.result.n_evaluations


@pytest.mark.slow
@pytest.mark.parametrize("method, n_permutations, bound", [("permutation", 24, "1MB"), ("owen", 160, "2MB"),
                                                           ("truncated", 24, "1MB")])
def test_workers_over_their_bound_accumulate_on_disk_and_equal_the_local_bounded_run(local_ray, wide_recipe, tmp_path,
                                                                                     method, n_permutations, bound):
    """Under a 1 MB bound (owen: 2 MB) a worker's moments (312 KB x 2) go on disk: no fallback warning, only paths
    come back, the driver merges range by range into its own on-disk
    moments; cancelled after a round and resumed, the run equals a local bounded run to 1e-12."""
    from msa_core.ondisk import ChunkedArray

    spec = RunSpec(wide_recipe, method=method, n_permutations=n_permutations, seed=3)  # 24 or 16 units
    local = execute(spec, RunStore(tmp_path / "local"), max_memory=bound)
    assert local.result.on_disk
    store = RunStore(tmp_path / "ray")
    cancel = threading.Event()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the old "accumulating on the driver" fallback
        with pytest.raises(RunCancelled):
            execute(spec, store, cancel=cancel, checkpoint_interval=0.0, backend="ray", ray_options=WORKERS,
                    max_memory=bound, progress=lambda done, total: cancel.set() if done > 2 else None)
    checkpoint = store.load_checkpoint(local.id)
    assert checkpoint[1]["ray_accumulate"] == {"mode": "workers", "units_per_task": 6, "on_disk": True}
    assert checkpoint[0]["next_unit"] == 12 and checkpoint[0]["accumulator"]["path"]  # the driver's moments: a folder
    reads = []
    original = ChunkedArray.read_rows
    with pytest.MonkeyPatch.context() as patch:  # the driver's reads (workers are other processes)
        patch.setattr(ChunkedArray, "read_rows", lambda self, rows: reads.append(original(self, rows).nbytes) or
                      original(self, rows))
        remote = execute(spec, store, backend="ray", ray_options=WORKERS, max_memory=bound)
    info = remote.result.metadata["ray"]
    assert info["accumulate"]["mode"] == "workers" and info["accumulate"]["on_disk"]
    assert info["bytes_returned"] == 0  # endpoints from the checkpoint; parts are paths: no moments, no samples
    assert 0 < max(reads) <= parse_memory(bound) // 32 < 10 * 2000 * 8  # row ranges, never a whole (n, *output) moment
    assert remote.params["resumed_from_unit"] == 12 and remote.result.n_evaluations == local.result.n_evaluations
    assert remote.result.on_disk and remote.id == local.id
    if method == "truncated":  # the whole run's skipped fraction, though this session merged only the last units
        skipped = local.result.metadata["truncation"]["skipped_fraction"]
        assert skipped > 0 and remote.result.metadata["truncation"]["skipped_fraction"] == pytest.approx(skipped, abs=1e-12)
    assert np.allclose(remote.result.values.numpy(), local.result.values.numpy(), rtol=0, atol=1e-12)
    assert np.allclose(remote.result.stderr.numpy(), local.result.stderr.numpy(), rtol=0, atol=1e-12)
    assert not list(store.scratch_dir().glob("ray-*"))  # the parts folders are gone


@pytest.mark.slow
def test_a_parts_folder_the_workers_cannot_see_stops_workers_and_moves_auto_to_the_driver(local_ray, wide_recipe,
                                                                                          tmp_path, monkeypatch):
    """As if the workers were on other machines: the driver's marker token is not the one they read."""
    from msa_core.runs import ray_disk

    monkeypatch.setattr(ray_disk, "read_marker", lambda folder: "a token only the driver sees")
    spec = RunSpec(wide_recipe, method="permutation", n_permutations=12, seed=1)
    store = RunStore(tmp_path / "ray")
    with pytest.raises(ValueError, match="is not visible on .*\\(worker 0\\).*shared filesystem"):
        execute(spec, store, backend="ray", ray_options=WORKERS, max_memory="1MB")
    record = execute(spec, store, backend="ray", ray_options={"workers": 2}, max_memory="1MB")  # auto
    accumulate = record.result.metadata["ray"]["accumulate"]
    assert accumulate["mode"] == "driver" and "not visible" in accumulate["reason"]
    local = execute(spec, RunStore(tmp_path / "local"), max_memory="1MB")
    assert record.result.on_disk and np.allclose(record.result.values.numpy(), local.result.values.numpy(),
                                                 rtol=0, atol=1e-12)
    assert not list(store.scratch_dir().glob("ray-*"))


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
