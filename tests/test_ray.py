"""The Ray backend: the game's evaluations on Ray workers, the estimator on the driver; equal to a local run.

Every method on Ray is also checked by tests/test_seams.py."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from msa_core.runs import RunSpec, RunStore, execute  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

RECIPE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4), nn.Softmax(-1))
        return {"model": model, "inputs": torch.randn(5, 6), "default_units": ["1"]}
    '''
)


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray  # left running for the other Ray test module (one Ray per pytest process; closed at exit)


@pytest.fixture()
def recipe(tmp_path: Path) -> str:
    path = tmp_path / "ray_recipe.py"
    path.write_text(RECIPE)
    return f"{path}:make"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs tiny models: one torch thread (see conftest)."""


@pytest.mark.slow
@pytest.mark.parametrize("method, budget, workers", [("permutation", 700, None), ("antithetic", 600, 1)])
def test_ray_run_equals_local_run(local_ray, recipe, tmp_path, method, budget, workers):
    spec = RunSpec(recipe, method=method, n_permutations=budget, seed=7)
    local = execute(spec, RunStore(tmp_path / "local"))
    seen = []
    remote = execute(spec, RunStore(tmp_path / "ray"), backend="ray", progress=lambda d, t: seen.append((d, t)),
                     ray_options={"workers": workers})
    assert remote.id == local.id and remote.params["backend"] == "ray"
    info = remote.result.metadata["ray"]
    assert info["workers"] == (workers or 2) and info["tasks"] >= info["calls"] >= 2
    assert torch.equal(remote.result.values, local.result.values)
    assert torch.equal(remote.result.stderr, local.result.stderr)
    assert remote.result.n_evaluations == local.result.n_evaluations == seen[-1][0] == seen[-1][1]


@pytest.mark.slow
def test_ray_run_resumes_a_local_checkpoint(local_ray, recipe, tmp_path):
    """A run cancelled locally after its first block finishes on Ray with the same values."""
    import threading

    from msa_core import RunCancelled

    spec = RunSpec(recipe, n_permutations=600, seed=3, batch_size=64)
    store = RunStore(tmp_path / "store")
    cancel = threading.Event()
    with pytest.raises(RunCancelled):
        execute(spec, store, cancel=cancel, checkpoint_interval=0.0,
                progress=lambda done, total: cancel.set() if done > 256 * 9 + 2 else None)
    record = execute(spec, store, backend="ray")
    assert record.params["resumed_evaluations"] > 0
    reference = execute(spec, RunStore(tmp_path / "reference"))
    assert torch.equal(record.result.values, reference.result.values)
