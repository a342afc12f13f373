"""msa_core.mode_views: the Modes page's grid, one unit read alone, image details downsampled for display and
long vector modes drawn as top outputs plus a binned profile (issue 13)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from msa_core import mode_views
from msa_core.ondisk import ChunkedArray
from msa_core.result import ShapleyResult

from .test_thumbnails import count_rows_read


def _on_disk(tmp_path, values: torch.Tensor, stderr: torch.Tensor | None = None) -> ShapleyResult:
    shape = values.shape[1:]
    return ShapleyResult(values=ChunkedArray.from_array(tmp_path / "values", values),
                         stderr=None if stderr is None else ChunkedArray.from_array(tmp_path / "stderr", stderr),
                         n_evaluations=1, intact=values.sum(0), empty=torch.zeros(shape, dtype=torch.float64),
                         method="permutation")


def test_unit_source_reads_one_unit(tmp_path, monkeypatch):
    values = torch.randn(50, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = _on_disk(tmp_path, values, values.abs())
    rows_read = count_rows_read(monkeypatch)
    source = mode_views.unit_source(result, 31)
    assert rows_read == [1, 1]  # the mode and its standard error, one row each
    np.testing.assert_array_equal(source.values, values[31:32].numpy())
    np.testing.assert_array_equal(source.stderr, values[31:32].abs().numpy())
    assert source.unit_labels == [result.unit_labels[31]]


def test_display_downsampled_block_means_large_images_only():
    mode = np.arange(2 * 1 * 512 * 512, dtype=np.float64).reshape(1, 2, 1, 512, 512)
    source = SimpleNamespace(values=mode, stderr=None, unit_labels=["u"])
    small = mode_views.display_downsampled(source, max_side=256)
    assert small.values.shape == (1, 2, 1, 256, 256)  # the input axis kept: a chosen input still shows
    np.testing.assert_allclose(small.values[0, 1, 0, 3, 5], mode[0, 1, 0, 6:8, 10:12].mean())
    assert mode_views.display_downsampled(source, max_side=512) is source


def test_vector_profile_shows_the_top_outputs_and_binned_means():
    rng = np.random.default_rng(0)
    mode = rng.normal(size=(1, 5000))
    mode[0, 4321] = 50.0  # the largest |value|
    source = SimpleNamespace(values=mode, stderr=np.abs(mode) / 10, unit_labels=["u7"])
    fig = mode_views.detail_figure(source, 0)  # 5,000 outputs > PROFILE_MAX_OUTPUTS: the profile
    bars, band, line = fig.data
    top = np.argsort(-np.abs(mode[0]))[:20]
    assert list(bars.x) == [str(j) for j in top] and bars.x[0] == "4321"
    np.testing.assert_allclose(bars.y, mode[0, top])
    np.testing.assert_allclose(bars.error_y.array, np.abs(mode[0, top]) / 10)
    assert len(line.x) == mode_views.PROFILE_MAX_OUTPUTS
    starts = np.asarray(line.x)
    stops = np.append(starts[1:], 5000)
    np.testing.assert_allclose(line.y, [mode[0, a:b].mean() for a, b in zip(starts, stops)])
    assert max(band.y) == pytest.approx(50.0)  # the bin max keeps the spike the mean would blur
    assert "u7" in fig.layout.title.text


def test_short_vector_modes_keep_one_bar_per_output():
    source = SimpleNamespace(values=np.arange(10.0)[None], stderr=None, unit_labels=["u"])
    fig = mode_views.detail_figure(source, 0, output_labels=[f"d{j}" for j in range(10)])
    assert len(fig.data) == 1 and list(fig.data[0].x) == [f"d{j}" for j in range(10)]


def test_grid_of_an_on_disk_run_needs_its_thumbnails(tmp_path):
    from msa_core.thumbnails import run_efficiency_gap, run_thumbnails, run_totals

    values = torch.randn(12, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = _on_disk(tmp_path, values)
    with pytest.raises(ValueError, match="thumbnails"):
        mode_views.grid_figure(result)
    summaries = (run_thumbnails(result), run_totals(result), run_efficiency_gap(result))
    fig = mode_views.grid_figure(result, order="index", max_units=5, summaries=summaries)
    assert len(fig.data) == 5
    np.testing.assert_allclose(fig.data[2].z, values[2].mean(0).numpy(), rtol=1e-6)


def test_unit_ranges_cover_the_units_once_in_order():
    labels = [f"net.0:{i}" for i in range(96)] + [f"net.1:{i}" for i in range(4000)]
    units = list(range(4096))  # sqrt(4096) = 64 a range
    by_layer = mode_views.unit_ranges(units, labels, ranked=False)
    assert [u for _, members in by_layer for u in members] == units
    assert by_layer[0] == ("net.0:0 ... net.0:63", list(range(64)))
    assert by_layer[1] == ("net.0:64 ... net.0:95", list(range(64, 96)))  # the layer ends the range
    assert by_layer[2] == ("net.1:0 ... net.1:63", list(range(96, 160))) and max(len(m) for _, m in by_layer) == 64
    assert len(by_layer) == 2 + 63  # 96 = 64 + 32, 4000 = 62 * 64 + 32
    ranked = mode_views.unit_ranges(units[::-1], labels, ranked=True)
    assert [name for name, _ in ranked][:2] == ["ranks 1-64", "ranks 65-128"] and ranked[-1][0] == "ranks 4033-4096"
    assert ranked[0][1] == list(range(4095, 4031, -1)) and len(ranked) == 64
    big = mode_views.unit_ranges(list(range(16384)), [f"x:{i}" for i in range(16384)], ranked=False)
    assert len(big) == 128 and {len(m) for _, m in big} == {128}  # sqrt(n) a range past 4,096 units
    tiny_layers = [f"l{i // 2}:{i % 2}" for i in range(1000)]  # 500 layers of two: ranges of 64 instead
    assert len(mode_views.unit_ranges(list(range(1000)), tiny_layers, ranked=False)) == 16
    assert mode_views.unit_ranges([5], [f"solo:{i}" for i in range(6)], ranked=False) == [("solo:5", [5])]
