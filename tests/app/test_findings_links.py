"""The Findings page links each report section to its stored runs (Modes, Lesion curves, Editor), and opening
such a link in a fresh session selects that run."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .test_pages import ROOT, _no_errors, msa_home  # noqa: E402,F401 - the module's fixture

LINK = re.compile(r"\[([^\]]+)\]\(((?:modes|curves|editor)\?[^)]+)\)")


@pytest.fixture(scope="module")
def report(msa_home, tmp_path_factory):
    """A report folder as `msa report` writes it: FINDINGS.md and findings_runs.json from FindingsRuns, whose
    runs (small ones of two built-ins) are in the app's store; plus one cited run that is not stored."""
    from msa_core.report import FindingsRuns
    from msa_core.runs import RunSpec, RunStore

    folder = tmp_path_factory.mktemp("findings")
    runs = FindingsRuns(RunStore(str(msa_home)))
    mlp = runs.run("concentration", "mlp-digits", RunSpec("mlp-digits", budget=300))
    runs.note("lesion_curves", mlp, "mlp-digits")
    dcgan = runs.run("dcgan", "dcgan-digits", RunSpec("dcgan-digits", budget=30))
    runs.write(folder / "findings_runs.json")
    (folder / "FINDINGS.md").write_text(
        "# Findings\n\nIntro.\n\n## 1. Hub concentration in the Fashion-MNIST MLPs (a test)\n\nNumbers.\n\n"
        "## 2. Lesion curves: Shapley-ranked removal\n\nCurves.\n\n## 4. The DCGAN's layer-by-layer modes\n\nImages.\n",
        encoding="utf-8",
    )
    return {"folder": folder, "mlp": mlp, "dcgan": dcgan}


def _findings_page(folder, monkeypatch) -> AppTest:
    from streamlit.util import calc_hash

    monkeypatch.setenv("MSA_FINDINGS_DIR", str(folder))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["model"] = "mlp-digits"
    at._page_hash = calc_hash("findings")
    at.run()
    _no_errors(at, "findings")
    return at


def _links(at: AppTest) -> list[tuple[str, str]]:
    """(title, url) of every run link on the page."""
    return [match for md in at.markdown for match in LINK.findall(md.value)]


def test_each_section_links_its_stored_runs_to_three_pages(report, monkeypatch):
    at = _findings_page(report["folder"], monkeypatch)
    links = _links(at)
    by_run: dict[str, set[str]] = {}
    for title, url in links:
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        assert {"Modes": "modes", "Lesion curves": "curves", "Editor": "editor"}[title] == parts.path
        record = {r.short_id[:12]: r for r in (report["mlp"], report["dcgan"])}[params["run"]]
        assert record.id.startswith(params["run"]) and params["model"] == record.spec.model
        by_run.setdefault(record.id, set()).add(parts.path)
    assert by_run == {report["mlp"].id: {"modes", "curves", "editor"}, report["dcgan"].id: {"modes", "curves", "editor"}}
    # the mlp run is cited by two sections: linked under both headings (3 links each), the dcgan run once
    assert len(links) == 9
    assert not any("not in this run store" in md.value for md in at.markdown)


@pytest.mark.parametrize("page", ["modes", "curves", "editor"])
def test_a_findings_link_opened_in_a_fresh_session_selects_its_run(report, monkeypatch, page):
    from streamlit.util import calc_hash

    at = _findings_page(report["folder"], monkeypatch)
    url = next(url for _, url in _links(at) if url.startswith(page + "?") and "dcgan" in url)
    parts = urlsplit(url)
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in parse_qsl(parts.query):
        fresh.query_params[key] = value
    fresh._page_hash = calc_hash(parts.path)  # AppTest has no URL bar: the first page by its URL path
    fresh.run()
    _no_errors(fresh, url)
    assert fresh.session_state["msa_run"] == report["dcgan"].id
    assert fresh.sidebar.selectbox[0].value == ("dcgan-digits", None)
    assert fresh.sidebar.selectbox[1].value == report["dcgan"].id
    title = {"modes": "Modes", "curves": "Lesion curves", "editor": "Editor"}[page]
    assert any(title.lower() in t.value.lower() for t in fresh.title), [t.value for t in fresh.title]


def test_a_cited_run_missing_from_the_store_says_so(report, monkeypatch, tmp_path):
    import json

    data = json.loads((report["folder"] / "findings_runs.json").read_text())
    data["runs"]["dcgan"][0]["run_id"] = "f" * 64
    data["runs"]["dcgan"][0]["short_id"] = "f" * 12
    (tmp_path / "findings_runs.json").write_text(json.dumps(data))
    (tmp_path / "FINDINGS.md").write_text((report["folder"] / "FINDINGS.md").read_text())
    at = _findings_page(tmp_path, monkeypatch)
    missing = [md.value for md in at.markdown if "ffffffffffff" in md.value]
    assert missing and "not in this run store" in missing[0]
