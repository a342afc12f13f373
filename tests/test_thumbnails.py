"""Thumbnails of a run's modes (issue 13): equal for on-disk and in-memory results, cached once next to the
stored arrays, computed a range of units at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.ondisk import ChunkedArray
from msa_core.result import ShapleyResult
from msa_core.runs.store import RunRecord, RunSpec, RunStore
from msa_core.thumbnails import block_mean, mode_thumbnails, run_efficiency_gap, run_thumbnails, run_totals

from .test_bounded_memory import LowRankLinear


def test_block_mean_is_exact_over_uneven_blocks():
    images = np.arange(2 * 5 * 7, dtype=np.float64).reshape(2, 5, 7)
    small = block_mean(images, 3)
    assert small.shape == (2, 3, 3)
    # rows split 0 | 1..2 | 3..4 (floor(k * 5 / 3)), columns 0..1 | 2..3 | 4..6
    assert small[1, 0, 0] == images[1, 0:1, 0:2].mean()
    assert small[0, 2, 2] == images[0, 3:5, 4:7].mean()
    assert np.array_equal(block_mean(images, 8), images)


def test_mode_thumbnails_of_images_and_vectors():
    modes = np.random.default_rng(0).normal(size=(4, 2, 3, 8, 8))
    thumbs = mode_thumbnails(modes, max_side=4)
    assert thumbs.shape == (4, 4, 4) and thumbs.dtype == np.float32
    expected = modes.reshape(4, 6, 8, 8).mean(1).reshape(4, 4, 2, 4, 2).mean((2, 4))
    assert np.allclose(thumbs, expected, atol=1e-6)
    vectors = np.random.default_rng(1).normal(size=(3, 10))
    assert np.allclose(mode_thumbnails(vectors, max_side=4)[:, 0], vectors, atol=1e-6)  # 10 <= 16: kept whole


def count_rows_read(monkeypatch) -> list[int]:
    """Patch ChunkedArray.read_rows to record how many rows each call reads (the list it appends to)."""
    rows_read: list[int] = []
    original = ChunkedArray.read_rows

    def counting(self, rows):
        out = original(self, rows)
        rows_read.append(len(out))
        return out

    monkeypatch.setattr(ChunkedArray, "read_rows", counting)
    return rows_read


@pytest.fixture()
def stored(tmp_path):
    game = LowRankLinear(12, (2, 1, 40, 40))
    store = RunStore(tmp_path / "home")
    result = shapley_modes(game, 12, n_permutations=3, seed=1, max_memory="1MB", scratch_dir=store.scratch_dir())
    assert result.on_disk
    in_memory = ShapleyResult(values=result.values.to_tensor(), stderr=None, n_samples=result.n_samples,
                              n_evaluations=result.n_evaluations, method=result.method, intact=result.intact,
                              empty=result.empty, unit_labels=list(result.unit_labels))
    store.put(RunRecord(id="cd" * 32, spec=RunSpec(model="linear"), result=result, created=1.0))
    return store, store.get("cdcd").result, in_memory


def test_on_disk_thumbnails_equal_in_memory_and_are_written_once(stored, monkeypatch):
    store, on_disk, in_memory = stored
    assert on_disk.on_disk
    rows_read = count_rows_read(monkeypatch)
    monkeypatch.setattr("msa_core.thumbnails._RANGE_BYTES", 3 * 2 * 40 * 40 * 8)  # three units a read
    thumbs = run_thumbnails(on_disk, max_side=16)
    assert rows_read and max(rows_read) <= 3 < on_disk.n_players  # never the whole array at once
    assert thumbs.shape == (12, 16, 16)
    assert np.allclose(thumbs, run_thumbnails(in_memory, max_side=16), atol=1e-6)
    assert np.allclose(run_totals(on_disk), in_memory.total_contribution().numpy(), atol=1e-9)
    assert run_efficiency_gap(on_disk) == pytest.approx(in_memory.efficiency_gap(), abs=1e-9)

    cached = store.root / "arrays" / ("cd" * 32) / "thumbnails-16.npy"
    assert cached.exists() and (store.root / "arrays" / ("cd" * 32) / "totals.npy").exists()
    mtime = cached.stat().st_mtime_ns
    rows_read.clear()
    again = run_thumbnails(store.get("cdcd").result, max_side=16)
    assert np.array_equal(again, thumbs) and cached.stat().st_mtime_ns == mtime
    assert rows_read == []  # read from the cache file, no mode read
    assert not any(p.name.endswith(".partial.npy") for p in cached.parent.iterdir())


def test_in_memory_results_write_no_cache(tmp_path):
    values = torch.randn(5, 6, 6, dtype=torch.float64)
    result = ShapleyResult(values=values, stderr=None, n_samples=1, n_evaluations=1, method="exact",
                           intact=values.sum(0), empty=torch.zeros(6, 6, dtype=torch.float64))
    assert np.allclose(run_thumbnails(result, 32), values.numpy(), atol=1e-6)
