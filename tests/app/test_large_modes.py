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


def _store_image_run(msa_home, run_id: str, values, labels) -> None:
    """Store image modes ``values`` ``(n_units, ..., h, w)`` float64 as an on-disk dcgan-digits run with these unit
    labels (no standard errors)."""
    import torch
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord

    store = RunStore(str(msa_home))
    scratch = store.scratch_dir() / f"picker-{run_id[:4]}"
    zeros = torch.zeros(values.shape[1:], dtype=torch.float64)
    result = ShapleyResult(values=ChunkedArray.from_array(scratch / "values", values), stderr=None, n_evaluations=1,
                           intact=zeros, empty=zeros, method="permutation", unit_labels=labels)
    store.put(RunRecord(id=run_id, spec=RunSpec(model="dcgan-digits"), result=result, created=1.0))


def _open_modes(params: dict[str, str]) -> AppTest:
    from streamlit.util import calc_hash

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    at._page_hash = calc_hash("modes")
    return at.run()


def _detail_title(at: AppTest) -> str:
    return (json.loads(at.get("plotly_chart")[-1].proto.spec).get("layout", {}).get("title") or {}).get("text", "")


def _param(at: AppTest, key: str):
    value = dict(at.query_params).get(key)
    return value[0] if isinstance(value, list) else value


def test_two_step_unit_picker_of_a_large_run_round_trips_its_url(msa_home):
    """600 units (more than 512): a "Unit range" selectbox (64 units a range, ranked by total) and a "Unit"
    selectbox of that range's units; the URL holds the unit index alone, and a link reopens range and unit."""
    import torch

    n = 600
    # unit i's mode is (i + 1) times one pattern of sum 1: its total is i + 1, so the ranking is n-1, n-2, ..., 0
    pattern = torch.full((1, 1, 4, 4), 1 / 16, dtype=torch.float64)
    values = torch.arange(1, n + 1, dtype=torch.float64)[:, None, None, None, None] * pattern
    labels = [f"a:{i}" if i < 300 else f"b:{i - 300}" for i in range(n)]
    run_id = "9a" * 32
    _store_image_run(msa_home, run_id, values, labels)

    at = _open_modes({"model": "dcgan-digits", "run": run_id, "unit": "450"})
    _no_errors(at, "modes (two-step picker)")
    ranges, unit = (next(w for w in at.selectbox if w.label == label) for label in ("Unit range", "Unit"))
    assert len(ranges.options) == 10 and ranges.options[0] == "ranks 1-64" and ranges.options[-1] == "ranks 577-600"
    assert ranges.value == (n - 1 - 450) // 64  # rank 150 of 600: the third range
    assert unit.value == 450 and len(unit.options) == 64
    assert unit.options[0] == f"{labels[n - 1 - 128]} (total +{n - 128})"  # rank 129 first: b:171, total 472
    assert _detail_title(at) == f"unit {labels[450]} (mean over inputs)"

    ranges.set_value(7).run()  # another range: its first unit (rank 449, unit 150)
    _no_errors(at, "modes (range changed)")
    assert next(w for w in at.selectbox if w.label == "Unit").value == n - 1 - 7 * 64
    assert _param(at, "unit") == str(n - 1 - 7 * 64)
    assert _detail_title(at) == f"unit {labels[n - 1 - 7 * 64]} (mean over inputs)"
    next(w for w in at.selectbox if w.label == "Unit").set_value(120).run()  # a unit of that range (rank 479)
    assert _param(at, "unit") == "120" and _detail_title(at) == f"unit {labels[120]} (mean over inputs)"

    again = _open_modes({key: _param(at, key) for key in dict(at.query_params)})  # the link, in a fresh session
    _no_errors(again, "modes (two-step picker, reopened)")
    assert next(w for w in again.selectbox if w.label == "Unit range").value == 7
    assert next(w for w in again.selectbox if w.label == "Unit").value == 120
    assert _detail_title(again) == f"unit {labels[120]} (mean over inputs)"

    next(w for w in again.radio if w.label == "Order units by").set_value("index").run()  # ranges of layers
    ranges = next(w for w in again.selectbox if w.label == "Unit range")
    assert ranges.options[:2] == ["a:0 ... a:63", "a:64 ... a:127"] and ranges.options[4] == "a:256 ... a:299"
    assert ranges.options[5] == "b:0 ... b:63" and len(ranges.options) == 10  # no range spans two layers
    assert ranges.value == 1 and next(w for w in again.selectbox if w.label == "Unit").value == 120
    assert _param(again, "unit") == "120"

    top = _open_modes({"model": "dcgan-digits", "run": run_id, "unit": "9999"})  # not a unit: the default
    assert next(w for w in top.selectbox if w.label == "Unit").value == n - 1 and _param(top, "unit") is None
    assert top.dataframe[0].value["stderr"].tolist() == ["-"] * 10  # no standard errors: "-", not "None"


def test_small_runs_keep_the_one_selectbox_picker(msa_home, monkeypatch):
    """Up to 512 units one "Unit" selectbox of every unit (ordered as the page's order); the threshold
    can be moved (``MSA_MODES_SINGLE_PICKER_MAX``), and a run above it gets the ranges."""
    import torch

    values = torch.randn(40, 1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    run_id = "9b" * 32
    _store_image_run(msa_home, run_id, values, [f"c:{i}" for i in range(40)])
    at = _open_modes({"model": "dcgan-digits", "run": run_id, "unit": "17"})
    _no_errors(at, "modes (one selectbox)")
    assert [w.label for w in at.selectbox].count("Unit range") == 0
    unit = next(w for w in at.selectbox if w.label == "Unit")
    assert unit.value == 17 and len(unit.options) == 40
    monkeypatch.setenv("MSA_MODES_SINGLE_PICKER_MAX", "16")
    two = _open_modes({"model": "dcgan-digits", "run": run_id, "unit": "17"})
    _no_errors(two, "modes (threshold 16)")
    assert len(next(w for w in two.selectbox if w.label == "Unit range").options) == 1  # 40 units: one range of 64
    assert next(w for w in two.selectbox if w.label == "Unit").value == 17


def test_rgb_modes_show_each_channel_in_the_unit_detail(msa_home):
    """Three-channel image outputs ``(input, 3, H, W)``: the grid caption says so, the unit detail draws the red,
    green and blue channels of the unit's mode (one signed scale) and their colour shift."""
    import torch

    values = torch.zeros(20, 2, 3, 8, 8, dtype=torch.float64)
    values[:, :, 0] = torch.arange(20, dtype=torch.float64)[:, None, None, None]  # unit i raises red by i
    values[:, :, 2] = -1.0  # and lowers blue by 1
    run_id = "9c" * 32
    _store_image_run(msa_home, run_id, values, [f"rgb:{i}" for i in range(20)])
    at = _open_modes({"model": "dcgan-digits", "run": run_id, "unit": "5"})
    _no_errors(at, "modes (RGB)")
    assert any("RGB" in caption.value for caption in at.caption)
    detail = json.loads(at.get("plotly_chart")[-1].proto.spec)
    red, green, blue, shift = detail["data"][:4]
    assert [t["type"] for t in detail["data"]] == ["heatmap"] * 3 + ["image"]  # no standard errors stored
    assert np.allclose(_array(red["z"]), 5.0) and np.allclose(_array(green["z"]), 0.0)
    assert np.allclose(_array(blue["z"]), -1.0) and red["zmax"] == 5.0 and blue["zmin"] == -5.0
    assert detail["layout"]["title"]["text"] == "unit rgb:5 (mean over inputs)"
    table = at.dataframe[0].value
    assert table["channel"].tolist() == [0] * 10 and np.allclose(table["value"], 5.0)


def test_two_step_picker_of_a_vector_run_in_index_order(msa_home):
    """600 vector units ordered by index: the two-step picker opens the linked unit's range and draws its bars;
    another range selects and draws its first unit. (A click on a bar sets ``st.session_state["modes_unit"]``,
    which the picker follows the same way; AppTest cannot click a Plotly bar.)"""
    import torch
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord

    store = RunStore(str(msa_home))
    values = torch.randn(600, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    result = ShapleyResult(values=ChunkedArray.from_array(store.scratch_dir() / "picker-vector" / "values", values),
                           stderr=None, n_evaluations=1, intact=values.sum(0),
                           empty=torch.zeros(10, dtype=torch.float64), method="permutation")
    run_id = "9d" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model="mlp-digits"), result=result, created=1.0))
    at = _open_modes({"model": "mlp-digits", "run": run_id, "unit": "3", "order": "index"})
    _no_errors(at, "modes (vector, two-step picker)")
    assert next(w for w in at.selectbox if w.label == "Unit range").value == 0  # units 0-63 in index order
    detail = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]
    assert np.allclose(_array(detail["y"]), values[3].numpy())
    ranges = next(w for w in at.selectbox if w.label == "Unit range")
    assert ranges.options[4] == "256 ... 319"  # labels "0", "1", ...: no layers, ranges of 64
    next(w for w in at.selectbox if w.label == "Unit range").set_value(4).run()
    assert next(w for w in at.selectbox if w.label == "Unit").value == 256 and _param(at, "unit") == "256"
    detail = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]
    assert np.allclose(_array(detail["y"]), values[256].numpy())
