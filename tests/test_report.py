"""The findings report in quick mode: every number from a stored run, figures written, reruns find the runs."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from msa_core.report import Budget, concentration_se, findings_runs, report_main, write_report  # noqa: E402
from msa_core.runs import RunStore  # noqa: E402


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    store = RunStore(folder / "store")
    path = write_report(folder / "docs", quick=True, store=store)
    return path, store


def test_quick_report_writes_markdown_figures_and_run_ids(quick_report):
    path, store = quick_report
    text = path.read_text()
    for heading in ("## 1. Hub concentration", "### Concentration against the hidden width N", "## 2. Lesion curves",
                    "## 3. Language-specific experts", "## 4. The DCGAN"):
        assert heading in text
    assert "quick mode" in text
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert len(figures) >= 5
    for figure in figures:
        png = path.parent / figure
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    rows = re.findall(r"^\| (mlp-fashion[-l12]*) \| `([0-9a-f]{12})` \| [0-9.]+ \| ([0-9.]+) \| ([0-9.]+) \|", text, flags=re.M)
    assert {name for name, *_ in rows} == {"mlp-fashion", "mlp-fashion-l1", "mlp-fashion-l2"}
    for name, short, index, se in rows:
        assert 0.0 <= float(index) <= 1.0 and float(se) >= 0.0
        record = store.get(short)  # the id printed next to the numbers is a stored run of that model
        assert record is not None and record.spec.model == name
        assert record.spec.n_permutations == Budget.quick().mlp_permutations


def test_findings_runs_lists_every_cited_run(quick_report):
    path, store = quick_report
    runs = findings_runs(path.parent)
    assert {"concentration", "sweep", "lesion_curves", "estimators", "interactions", "moe", "dcgan"} <= set(runs)
    cited = set(re.findall(r"`([0-9a-f]{12})`", path.read_text()))
    listed = {ref["short_id"] for refs in runs.values() for ref in refs}
    assert cited <= listed
    for refs in runs.values():
        for ref in refs:
            assert store.get(ref["run_id"]).id == ref["run_id"]
    assert findings_runs(path.parent / "nowhere") == {}


def test_rerun_finds_every_stored_run(quick_report, tmp_path):
    path, store = quick_report
    again = write_report(tmp_path, quick=True, store=store)
    runs = findings_runs(again.parent)
    assert all(ref["cached"] for refs in runs.values() for ref in refs)
    found, total = re.search(r"This time (\d+) of (\d+) runs were found", again.read_text()).groups()
    assert found == total


def test_concentration_se_is_zero_without_sampling_error_and_grows_with_it():
    values = np.zeros((4, 2))
    values[0] = 1.0  # one hub: index 0, hub share 1/4
    exact = SimpleNamespace(values=values, stderr=None)
    out = concentration_se(exact, n_draws=50)
    assert out["index"] == pytest.approx(0.0) and out["hub_share"] == pytest.approx(0.25)
    assert out["index_se"] == 0.0 and out["hub_share_se"] == 0.0
    noisy = SimpleNamespace(values=values, stderr=np.full((4, 2), 0.2))
    assert concentration_se(noisy, n_draws=200)["index_se"] > 0.01


def test_report_main_parses_arguments(tmp_path, monkeypatch):
    calls = {}

    def fake(out_dir, *, quick=False):
        calls.update(out_dir=out_dir, quick=quick)
        return tmp_path / "FINDINGS.md"

    monkeypatch.setattr("msa_core.report.write_report", fake)
    assert report_main(["--out-dir", str(tmp_path), "--quick"]) == 0
    assert calls == {"out_dir": str(tmp_path), "quick": True}
