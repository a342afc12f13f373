"""The Findings page on runs whose modes live on disk (issue 13): the selected run's concentration table and the
across-runs table come from per-unit totals computed a range of units at a time, never the whole array."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from msa_core.ondisk import ChunkedArray  # noqa: E402

from ..test_thumbnails import count_rows_read  # noqa: E402
from .test_pages import ROOT, _no_errors, msa_home  # noqa: E402,F401 - the module's fixtures


def test_findings_of_on_disk_runs_never_read_them_whole(msa_home, monkeypatch):
    import torch
    from msa_core.analysis import distributed_index, hub_share
    from msa_core.result import ShapleyResult
    from msa_core.runs import RunSpec, RunStore
    from msa_core.runs.store import RunRecord
    from streamlit.util import calc_hash

    store = RunStore(str(msa_home))
    images = torch.randn(48, 2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    images[:6] += 0.5  # a few hubs
    scratch = store.scratch_dir() / "findings-test"
    result = ShapleyResult(values=ChunkedArray.from_array(scratch / "values", images), stderr=None, n_evaluations=1,
                           intact=images.sum(0), empty=torch.zeros(images.shape[1:], dtype=torch.float64),
                           method="permutation")
    run_id = "ab" * 32
    store.put(RunRecord(id=run_id, spec=RunSpec(model="dcgan-digits"), result=result, created=1.0))
    assert store.get(run_id).result.on_disk
    c = images.reshape(48, -1).mean(1).numpy()

    rows_read = count_rows_read(monkeypatch)
    monkeypatch.setattr("msa_core.thumbnails._RANGE_BYTES", 8 * 2 * 16 * 16 * 8)  # eight units a read
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["model"] = "dcgan-digits"
    at.query_params["run"] = run_id
    at._page_hash = calc_hash("findings")
    at.run()
    _no_errors(at, "findings (on disk)")
    assert rows_read and max(rows_read) <= 8  # a range of units at a time, never the whole array
    selected, across = at.dataframe[0].value, at.dataframe[1].value
    assert selected.loc["all", "distributed_index"] == pytest.approx(distributed_index(c), abs=1e-9)
    row = across[across["run"] == run_id[:8]].iloc[0]
    assert row["units"] == 48
    assert row["distributed index"] == pytest.approx(round(distributed_index(c), 3))
    assert row["hub share"] == pytest.approx(round(hub_share(c), 3))
