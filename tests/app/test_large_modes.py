"""The Modes page on a run whose modes live on disk (issue 13): it opens a selected unit without loading the
whole result, and draws the grid from thumbnails cached next to the run's arrays."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from msa_core.ondisk import ChunkedArray  # noqa: E402

from ..test_thumbnails import count_rows_read  # noqa: E402
from .test_pages import ROOT, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures


def test_modes_page_opens_one_unit_of_an_on_disk_run(msa_home, monkeypatch):
    from msa_core.runs import RunSpec, RunStore, execute
    from streamlit.util import calc_hash

    store = RunStore(str(msa_home))
    run = execute(RunSpec("dcgan-digits", budget=40), store=store, max_memory="4MB")  # streamed: modes on disk
    result = store.get(run.id).result
    assert result.on_disk and result.output_shape == (32, 1, 32, 32)
    unit = int(np.argsort(result.total_contribution().numpy())[0])  # the last in the grid's order, not the default

    rows_read = count_rows_read(monkeypatch)
    monkeypatch.setattr("msa_core.thumbnails._RANGE_BYTES", 4 * 32 * 32 * 32 * 8)  # four units a read

    def open_page() -> tuple[AppTest, float]:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        at.query_params["model"] = "dcgan-digits"
        at.query_params["run"] = run.id
        at.query_params["unit"] = str(unit)
        at._page_hash = calc_hash("modes")
        start = time.perf_counter()
        at.run()
        return at, time.perf_counter() - start

    at, first_s = open_page()
    _no_errors(at, "modes (on disk)")
    assert next(w for w in at.selectbox if w.label == "Unit").value == unit
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [(c.get("layout", {}).get("title") or {}).get("text", "") for c in charts]
    assert f"unit {result.unit_labels[unit]} (mean over inputs)" in titles  # the selected unit's detail
    assert rows_read and max(rows_read) < result.n_players  # the whole modes array was never read at once
    assert (msa_home / "arrays" / run.id / "thumbnails-32.npy").exists()

    rows_read.clear()
    again, second_s = open_page()
    _no_errors(again, "modes (on disk, reopened)")
    assert max(rows_read) == 1  # thumbnails and totals come from the cache: only the selected unit is read
    start = time.perf_counter()
    result.mode(unit)
    print(f"\non-disk modes page: first open {first_s:.2f} s, second open {second_s:.2f} s; "
          f"result.mode(i) {1e3 * (time.perf_counter() - start):.2f} ms")


def _array(data) -> np.ndarray:
    """A plotly JSON array: a list, or ``{"dtype", "bdata"}`` (base64 of the raw values)."""
    if isinstance(data, dict):
        import base64

        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).astype(float)
    return np.asarray(data, dtype=float)


def test_modes_page_on_an_on_disk_vector_run(msa_home):
    """Vector modes on disk: bars and heatmap from the thumbnails (the modes themselves when short), the
    detail from the one selected unit, with its standard errors."""
    import torch
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord
    from streamlit.util import calc_hash

    store = RunStore(str(msa_home))
    values = torch.randn(64, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scratch = store.scratch_dir() / "vector-test"
    result = ShapleyResult(values=ChunkedArray.from_array(scratch / "values", values),
                           stderr=ChunkedArray.from_array(scratch / "stderr", values.abs() / 10), n_evaluations=1,
                           intact=values.sum(0), empty=torch.zeros(10, dtype=torch.float64), method="permutation")
    run_id = "ef" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model="mlp-digits"), result=result, created=1.0))
    assert store.get(run_id).result.on_disk
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for key, value in {"model": "mlp-digits", "run": run_id, "unit": "3", "output": "2"}.items():
        at.query_params[key] = value
    at._page_hash = calc_hash("modes")
    at.run()
    _no_errors(at, "modes (on disk, vector)")
    assert next(w for w in at.selectbox if w.label == "Bars show").value == 2
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars, detail = charts[0]["data"][0], charts[-1]["data"][0]
    assert len(charts) == 3  # bars, unit x output heatmap, unit detail
    assert np.allclose(_array(detail["y"]), values[3].numpy(), atol=1e-12)
    assert np.allclose(_array(detail["error_y"]["array"]), values[3].abs().numpy() / 10)
    assert np.allclose(sorted(_array(bars["y"])), sorted(values[:, 2].numpy()), atol=1e-6)


def test_on_disk_vector_run_with_many_outputs_shows_the_units_mode(msa_home):
    """More than 1024 outputs on disk: total bars above, and the unit's mode below as its top outputs by
    |value| over a binned profile (not one bar per output, not total bars only)."""
    import torch
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord
    from streamlit.util import calc_hash

    store = RunStore(str(msa_home))
    values = torch.randn(40, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    values[5, 2024] = 40.0
    scratch = store.scratch_dir() / "long-vector-test"
    result = ShapleyResult(values=ChunkedArray.from_array(scratch / "values", values), stderr=None, n_evaluations=1,
                           intact=values.sum(0), empty=torch.zeros(3000, dtype=torch.float64), method="permutation")
    run_id = "fa" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model="mlp-digits"), result=result, created=1.0))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for key, value in {"model": "mlp-digits", "run": run_id, "unit": "5"}.items():
        at.query_params[key] = value
    at._page_hash = calc_hash("modes")
    at.run()
    _no_errors(at, "modes (on disk, 3000 outputs)")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2  # total bars, then the unit detail
    top, _, profile = charts[-1]["data"]
    order = np.argsort(-np.abs(values[5].numpy()))[:20]
    assert top["x"][0] == "2024" and np.allclose(_array(top["y"]), values[5].numpy()[order])
    assert len(_array(profile["y"])) == 1024
    assert np.isclose(_array(profile["y"]).mean(), values[5].mean().item(), atol=0.05)
