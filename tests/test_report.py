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


def test_topk_is_a_stored_run_with_its_k_and_cited(quick_report):
    path, store = quick_report
    refs = [ref for ref in findings_runs(path.parent)["estimators"] if ref["spec"]["method"] == "topk"]
    assert len(refs) == 1
    record = store.get(refs[0]["run_id"])
    assert record.spec.method == "topk" and record.spec.options_dict == {"k": 5}
    assert record.result.metadata["topk"]["k"] == 5 and len(record.result.metadata["topk"]["top_k"]) == 5
    line = next(line for line in path.read_text().splitlines() if line.startswith("| top-5 bandit |"))
    assert f"`{refs[0]['short_id']}`" in line  # the table names the run, not "not stored"


def test_every_report_heading_with_runs_maps_to_its_section(quick_report):
    from msa_core.report import SECTIONS, section_of_heading

    path, _ = quick_report
    headings = [line for line in path.read_text().splitlines() if re.match(r"#{2,3} ", line)]
    mapped = {section_of_heading(h) for h in headings} - {None}
    assert mapped == set(SECTIONS)  # every section's runs get a place under its heading on the Findings page
    assert section_of_heading("## 9. Something else") is None


def test_run_links_hold_model_inputs_and_short_run_id():
    from urllib.parse import parse_qs, urlsplit

    from msa_core.report import run_links

    ref = {"run_id": "ab" * 32, "short_id": "ab" * 6, "spec": {"model": "msa_core.zoo.sweep:mlp_fashion_n5", "inputs": None}}
    links = run_links(ref)
    assert set(links) == {"Modes", "Lesion curves", "Editor"}
    parts = urlsplit(links["Lesion curves"])
    assert parts.path == "curves"
    assert parse_qs(parts.query) == {"model": ["msa_core.zoo.sweep:mlp_fashion_n5"], "run": ["abababababab"]}
    with_inputs = run_links(ref | {"spec": {"model": "net.pt", "inputs": "/data/x y.npz"}})["Modes"]
    assert parse_qs(urlsplit(with_inputs).query)["inputs"] == ["/data/x y.npz"]


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


def _captured(monkeypatch):
    """Figures the report functions draw, kept open instead of saved."""
    import msa_core.report.figures as report_figures

    drawn = []
    monkeypatch.setattr(report_figures, "_save", lambda fig, path: drawn.append(fig) or f"figures/{path.name}")
    return drawn


def test_concentration_figure_heatmaps_are_not_interpolated_and_the_legend_is_off_the_bars(monkeypatch, tmp_path):
    import pandas as pd
    import torch

    from msa_core.report.figures import fig_concentration

    drawn = _captured(monkeypatch)
    names = ["mlp-fashion-l1", "mlp-fashion-l2", "mlp-fashion"]
    summary = pd.DataFrame({"index (ours)": [0.7, 0.8, 0.9], "index SE": 0.01, "hub share (ours)": [0.3, 0.5, 0.5],
                            "hub share SE": 0.01, "index (paper)": [0.6, 0.67, 0.77], "hub share (paper)": [0.12, 0.17, 0.34]},
                           index=names)
    result = SimpleNamespace(values=torch.randn(20, 10), metadata={"output_labels": [f"c{i}" for i in range(10)]})
    records = {n: SimpleNamespace(result=result, short_id="0123456789ab") for n in names}
    fig_concentration({"summary": summary, "records": records}, tmp_path)
    fig = drawn[0]
    bars, *heatmaps = fig.axes[:4]
    assert all(ax.images[0].get_interpolation() == "nearest" for ax in heatmaps)
    assert [t.get_text() for t in heatmaps[0].get_yticklabels()] == [f"c{i}" for i in range(10)]
    fig.canvas.draw()
    legend, panel = bars.get_legend().get_window_extent(), bars.get_window_extent()
    assert legend.y1 <= panel.y0  # below the panel, not over the bars
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes[:4])


def test_spectra_leave_out_the_zero_frequency_bin(monkeypatch, tmp_path):
    import pandas as pd

    from msa_core.report.figures import fig_dcgan

    drawn = _captured(monkeypatch)
    freqs = [1 / 64 + k / 32 for k in range(16)]
    profile = pd.DataFrame([[1e-32] + [0.5 ** k for k in range(1, 16)]] * 2, index=["net.0", "net.1"], columns=freqs)
    image = np.zeros((1, 1, 32, 32))
    dc = {"layer_modes": {"net.0": image, "net.1": image}, "profile_units": profile, "profile_summed": profile,
          "result": SimpleNamespace(values=np.zeros((4, 1, 1, 32, 32)), intact=SimpleNamespace(numpy=lambda: image)),
          "cluster_lesion": {"intact": image, "lesioned": image, "difference": image}, "cluster": 0}
    fig_dcgan(dc, tmp_path)
    spectra = drawn[1]
    for ax in spectra.axes[:2]:
        low, high = ax.get_ylim()
        assert low >= 0.5 ** 15 / 4 and high <= 1.0  # the useful range, not down to 1e-32
        assert all(min(line.get_xdata()) > 1 / 32 for line in ax.get_lines())
        assert ax.get_xlabel() and ax.get_ylabel()
