"""The editor on large runs (issue 13): the Shapley prediction of a lesion set read from the lesioned units'
modes only, the grid's unit views, and totals from the per-run cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core import live_views as live
from msa_core.editor_units import ShapleyPrediction, grid_views, layer_groups, prediction_applies, unit_totals
from msa_core.ondisk import ChunkedArray
from msa_core.result import ShapleyResult

from .test_thumbnails import count_rows_read


def _results(tmp_path, n=20, shape=(2, 1, 6, 6)):
    values = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    common = dict(stderr=None, n_evaluations=1, intact=values.sum(0), empty=torch.zeros(shape, dtype=torch.float64),
                  method="permutation", unit_labels=[f"a:{i}" for i in range(12)] + [f"b.0:{i}" for i in range(n - 12)])
    on_disk = ShapleyResult(values=ChunkedArray.from_array(tmp_path / "values", values), **common)
    return values, on_disk, ShapleyResult(values=values, **common)


def test_prediction_is_the_sum_of_the_lesioned_modes_and_reads_only_those(tmp_path, monkeypatch):
    values, on_disk, in_memory = _results(tmp_path)
    rows_read = count_rows_read(monkeypatch)
    row_bytes = 2 * 36 * 8
    prediction = ShapleyPrediction(on_disk, max_bytes=2 * row_bytes)  # two modes a read
    lesioned = [3, 17, 5, 8, 0]
    assert torch.allclose(prediction.effect(lesioned), values[lesioned].sum(0), atol=1e-12)
    assert sum(rows_read) == 5 and max(rows_read) <= 2  # the five modes, two at a time
    rows_read.clear()
    assert torch.allclose(prediction.effect(lesioned + [9]), values[lesioned + [9]].sum(0), atol=1e-12)
    assert rows_read == [1]  # one more unit: one more mode read
    rows_read.clear()
    assert torch.allclose(prediction.effect([3, 17, 5, 8]), values[[3, 17, 5, 8]].sum(0), atol=1e-12)
    assert sum(rows_read) == 2  # two toggled off
    rows_read.clear()
    assert torch.equal(prediction.effect([]), torch.zeros(values.shape[1:], dtype=torch.float64)) and not rows_read
    # the same on an in-memory result; the predicted output is intact minus the effect
    memory = ShapleyPrediction(in_memory)
    intact = in_memory.intact.float()
    assert torch.allclose(memory.lesioned_output(intact, [1, 2]), intact.double() - values[1] - values[2], atol=1e-12)
    assert torch.allclose(memory.lesioned_output(intact, range(20)), intact.double() - values.sum(0), atol=1e-12)
    with pytest.raises(IndexError):
        prediction.effect([20])


def test_totals_come_from_the_chunked_pass_and_match_in_memory(tmp_path, monkeypatch):
    values, on_disk, in_memory = _results(tmp_path)
    monkeypatch.setattr("msa_core.thumbnails._RANGE_BYTES", 4 * 2 * 36 * 8)
    rows_read = count_rows_read(monkeypatch)
    totals = unit_totals(on_disk)
    assert max(rows_read) <= 4 < on_disk.n_players
    assert np.allclose(totals, values.reshape(20, -1).sum(1).numpy(), atol=1e-12)
    assert np.allclose(unit_totals(in_memory), totals, atol=1e-12)
    assert prediction_applies(on_disk, (2, 1, 6, 6)) and not prediction_applies(on_disk, (2, 36))
    assert not prediction_applies(None, (2, 1, 6, 6))


def test_grid_views_show_every_unit_of_a_small_game_and_pages_of_a_large_one():
    labels = [f"net.0:{i}" for i in range(10)] + [f"net.1:{i}" for i in range(5)]
    assert layer_groups(labels) == {"net.0": list(range(10)), "net.1": list(range(10, 15))}
    assert [(v.name, v.units) for v in grid_views(labels, limit=20)] == [("all 15 units", tuple(range(15)))]
    totals = np.zeros(15)
    totals[[2, 11, 14]] = [5.0, -9.0, 1.0]
    views = grid_views(labels, totals, limit=4)
    assert views[0].name == "top 4 by |Shapley value|" and set(views[0].units) >= {2, 11, 14}
    pages = [v.units for v in views[1:]]
    assert [len(p) for p in pages] == [4, 4, 2, 4, 1] and sorted(sum(pages, ())) == list(range(15))
    assert views[1].name == "net.0 (10 units) units 0-3 of 10" and views[4].name == "net.1 (5 units) units 0-3 of 5"
    assert grid_views(labels, np.zeros(15), limit=4)[0].name.startswith("net.0")  # no values: no top view


def test_a_grid_of_a_subset_of_units_points_at_their_game_indices():
    figure = live.unit_grid_figure([1.0, -2.0, 0.5], [40, 7], unit_indices=[40, 41, 42],
                                   unit_labels=["b:0", "b:1", "b:2"], limit=4.0)
    cells = figure["data"][0]
    assert cells["customdata"] == [40, 41, 42]
    assert cells["marker"]["symbol"] == ["square-x", "square", "square"]  # unit 40 lesioned; 7 is not shown
    assert cells["marker"]["cmax"] == 4.0 and cells["text"] == ["b:0", "b:1", "b:2"]
    with pytest.raises(ValueError, match="unit indices"):
        live.unit_grid_figure([1.0, 2.0], unit_indices=[0])

