"""Bounded memory (issue 13): max_memory, streamed join orders, on-disk accumulators and results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.estimators import SamplingState
from msa_core.memory import parse_memory
from msa_core.ondisk import ChunkedArray, is_on_disk


class LowRankLinear:
    """v(S) = sum_{i in S} w_i with w = A @ B (rank r): exact Shapley modes are w_i."""

    def __init__(self, n: int, shape: tuple[int, ...], rank: int = 3, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.a = torch.randn(n, rank, generator=generator, dtype=torch.float64)
        self.b = torch.randn(rank, *shape, generator=generator, dtype=torch.float64)
        self.n_players = n

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        return ((coalitions.to(torch.float64) @ self.a) @ self.b.reshape(self.b.shape[0], -1)).reshape(
            -1, *self.b.shape[1:])

    def exact(self) -> torch.Tensor:
        return (self.a @ self.b.reshape(self.b.shape[0], -1)).reshape(-1, *self.b.shape[1:])


def dense(array) -> torch.Tensor:
    return array.to_tensor() if is_on_disk(array) else array


def test_parse_memory_sizes_and_errors():
    assert parse_memory("4GB") == parse_memory("4G") == parse_memory("4 GiB") == 4 * 2**30
    assert parse_memory("200MB") == 200 * 2**20
    assert parse_memory(5 * 2**20) == 5 * 2**20
    for bad in ("lots", "-1G", "1KB", True):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_chunked_array_reads_rows_without_the_rest(tmp_path):
    data = np.arange(7 * 3 * 5, dtype=np.float64).reshape(7, 3, 5)
    array = ChunkedArray.from_array(tmp_path / "a", data)
    small = ChunkedArray.create(tmp_path / "b", (7, 3, 5), np.float32, chunk_bytes=2 * 15 * 4)
    assert small.n_chunks == 4  # 2 rows per chunk file
    small.write_rows([6, 0, 3], data[[6, 0, 3]])
    assert torch.equal(array[4], torch.from_numpy(data[4]))
    assert torch.equal(array[2:5], torch.from_numpy(data[2:5]))
    assert torch.equal(array[1, 2], torch.from_numpy(data[1, 2]))
    assert np.array_equal(small.read_rows([3, 6, 0]), data[[3, 6, 0]].astype(np.float32))
    assert float(small[1].abs().sum()) == 0.0
    assert np.array_equal(ChunkedArray.open(tmp_path / "a").numpy(), data)


@pytest.mark.parametrize("method", ["permutation", "antithetic"])
@pytest.mark.parametrize("max_memory", ["2MB", "12MB"])  # streamed with on-disk / in-memory moments
def test_streamed_run_equals_unbounded_run(method, max_memory, tmp_path):
    game = LowRankLinear(30, (20, 250))
    reference = shapley_modes(game, 30, method=method, n_permutations=6, seed=3)
    bounded = shapley_modes(game, 30, method=method, n_permutations=6, seed=3, max_memory=max_memory,
                            scratch_dir=tmp_path)
    assert bounded.metadata["memory"]["mode"] == "stream"
    assert bounded.n_evaluations == reference.n_evaluations
    assert torch.allclose(dense(bounded.values), reference.values, rtol=0, atol=1e-12)
    assert torch.allclose(dense(bounded.stderr), reference.stderr, rtol=0, atol=1e-12)
    assert torch.allclose(dense(bounded.values), game.exact(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method, run", [
    ("permutation", dict(n_permutations=5, max_memory="1MB")),
    ("owen", dict(budget=2 + 4 * 4 * 21, max_memory="2MB", estimator_options={"n_strata": 4})),
    ("truncated", dict(budget=2 + 4 * 4 * 21, max_memory="2MB", estimator_options={"tolerance": 0.3})),
], ids=["permutation", "owen", "truncated"])
def test_on_disk_checkpoint_resumes_to_the_uninterrupted_values(method, run, tmp_path):
    """A run stopped after two units resumes from its checkpoint, whose moments stay on disk, bit-identically."""
    game = LowRankLinear(20, (10, 400), seed=1)
    kwargs = dict(method=method, seed=7, **run)
    whole = shapley_modes(game, 20, scratch_dir=tmp_path / "whole", **kwargs)
    saved = []

    class Stop(Exception):
        pass

    def on_block(state):
        saved.append(state.to_arrays())
        if state.next_unit == 2:
            raise Stop

    with pytest.raises(Stop):
        shapley_modes(game, 20, scratch_dir=tmp_path / "part", on_block=on_block, **kwargs)
    assert "accumulator/path" in saved[-1] and "accumulator/mean" not in saved[-1]  # arrays stay on disk
    resumed = shapley_modes(game, 20, state=SamplingState.from_arrays(saved[-1]), **kwargs)
    assert whole.metadata["memory"]["on_disk"] and resumed.n_evaluations == whole.n_evaluations
    assert torch.equal(dense(resumed.values), dense(whole.values))
    assert torch.equal(dense(resumed.stderr), dense(whole.stderr))


def test_methods_that_cannot_meet_the_bound_say_so():
    game = LowRankLinear(30, (20, 250))
    with pytest.raises(ValueError, match="too small for outputs of 5000 values"):  # below one row a player
        shapley_modes(game, 30, method="owen", n_permutations=4, max_memory="1MB")
    with pytest.raises(ValueError, match="too small for outputs of 50000 values: a streamed topk unit"):
        shapley_modes(LowRankLinear(30, (20, 2500)), 30, method="topk", n_permutations=4, max_memory="1MB")


CHILD = textwrap.dedent("""
    import json, resource, sys, tempfile
    import torch
    sys.path.insert(0, {tests!r})
    from test_bounded_memory import LowRankLinear
    from msa_core import shapley_modes
    def vm():
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    def rss():
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    n, shape = 200, (100, 1000)  # values + stderr: 2 * 200 * 100000 * 8 B = 320 MB
    game = LowRankLinear(n, shape, seed=2)
    limit = vm() + 250 * 2**20  # less address space than the result needs
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    baseline = rss()
    result = shapley_modes(game, n, n_permutations=2, seed=0, max_memory="100MB", scratch_dir={scratch!r})
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the forking pytest's peak
    peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    error = 0.0
    for start in range(0, n, 25):
        exact = ((game.a[start:start + 25] @ game.b.reshape(3, -1)).reshape(-1, *shape))
        error = max(error, float((result.values[start:start + 25] - exact).abs().max()))
    print(json.dumps({{"baseline": baseline, "peak": peak, "error": error, "plan": result.metadata["memory"],
                      "on_disk": type(result.values).__name__}}))
""")


def test_large_result_under_a_small_bound_in_a_limited_process(tmp_path):
    tests = os.path.dirname(__file__)
    # a fixed mmap threshold: freed blocks go back to the system, so address space tracks use
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    completed = subprocess.run([sys.executable, "-c", CHILD.format(tests=tests, scratch=str(tmp_path))],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["on_disk"] == "ChunkedArray" and figures["plan"]["on_disk"]
    assert figures["error"] < 1e-10
    # the run's own arrays stay within the 100 MB bound (the 320 MB result never is in memory)
    assert figures["peak"] - figures["baseline"] < 100 * 2**20, figures


def test_store_keeps_an_on_disk_result_and_streams_its_export(tmp_path):
    from msa_core.runs.spec import RunSpec
    from msa_core.runs.store import RunRecord, RunStore

    game = LowRankLinear(12, (10, 300), seed=4)
    store = RunStore(tmp_path / "home", large_dtype="float32")
    result = shapley_modes(game, 12, n_permutations=3, seed=1, max_memory="1MB", scratch_dir=store.scratch_dir())
    exact_values = dense(result.values).clone()
    record = RunRecord(id="ab" * 32, spec=RunSpec(model="linear"), result=result, created=1.0)
    store.put(record)
    loaded = store.get("abab").result
    assert loaded.on_disk and loaded.values.dtype == np.float32 and loaded.values.shape == (12, 10, 300)
    assert torch.allclose(loaded.mode(5).double(), exact_values[5], atol=1e-5)
    assert not any(store.scratch_dir().iterdir())  # moved, not copied
    exported = store.export("abab", tmp_path / "run.npz")
    with np.load(exported, allow_pickle=False) as npz:
        assert npz["values"].shape == (12, 10, 300)
        assert np.allclose(npz["values"][7], exact_values[7].numpy(), atol=1e-5)
    assert store.delete("abab") and not (store.root / "arrays" / ("ab" * 32)).exists()


def test_an_interrupted_on_disk_accumulator_is_not_resumed(tmp_path):
    from msa_core.accumulate import DiskMoments

    moments = DiskMoments.create(tmp_path / "m", (4, 3), chunk_bytes=24)
    moments.update_rows(torch.tensor([0, 2]), torch.ones(2, 3), (4, 3))
    moments.finish_sample()
    assert DiskMoments.open(tmp_path / "m", 1).mean[2].tolist() == [1.0, 1.0, 1.0]
    moments.begin_sample()  # a crash from here on leaves the folder dirty
    with pytest.raises(ValueError, match="cannot be resumed"):
        DiskMoments.open(tmp_path / "m", 1)
