"""The tiny recipe and fixtures shared by the run-machinery tests (test_runs, test_run_interruptions)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from msa_core.runs import RunStore

RECIPE = textwrap.dedent(
    '''
    import os, time
    import torch
    from torch import nn

    class Slow(nn.Module):
        """Identity that sleeps $MSA_TEST_DELAY seconds per call (not part of the weights)."""
        def forward(self, x):
            delay = float(os.environ.get("MSA_TEST_DELAY", "0") or 0)
            if delay:
                time.sleep(delay)
            return x

    class Limit(nn.Module):
        """Identity that fails like a GPU out of memory above max_rows rows."""
        raised = 0
        def __init__(self, max_rows):
            super().__init__()
            self.max_rows = max_rows
        def forward(self, x):
            if x.shape[0] > self.max_rows:
                Limit.raised += 1
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            return x

    class Boom(nn.Module):
        """Identity that breaks when every unit of a row is lesioned (the empty coalition)."""
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

    def make_oom():
        return _base(Limit(8 * 16))

    def make_boom():
        return _base(Boom())
    '''
)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs tiny models: one torch thread (see conftest)."""


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_recipe.py"
    path.write_text(RECIPE)
    return path


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    monkeypatch.setenv("MSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MSA_TEST_DELAY", raising=False)
    return RunStore(tmp_path / "store")
