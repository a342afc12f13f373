"""The findings report in quick mode: it runs end to end and writes Markdown with figures."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from msa_core.report import LanguageLogLikelihood, report_main, write_report  # noqa: E402


def test_quick_report_writes_markdown_and_figures(tmp_path):
    path = write_report(tmp_path, quick=True)
    text = path.read_text()
    assert path.name == "FINDINGS.md"
    for heading in ("## 1. Hub concentration", "## 2. Lesion curves", "## 3. Language-specific experts", "## 4. The DCGAN"):
        assert heading in text
    assert "quick mode" in text
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert len(figures) == 5
    for figure in figures:
        png = tmp_path / figure
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    # the three MLPs appear in the concentration table with an index in [0, 1]
    rows = re.findall(r"^\| (mlp-digits[-l12]*) \| [0-9.]+ \| ([0-9.]+) \|", text, flags=re.M)
    assert {name for name, _ in rows} == {"mlp-digits", "mlp-digits-l1", "mlp-digits-l2"}
    assert all(0.0 <= float(index) <= 1.0 for _, index in rows)


def test_report_main_parses_arguments(tmp_path, monkeypatch):
    calls = {}

    def fake(out_dir, *, quick=False):
        calls.update(out_dir=out_dir, quick=quick)
        return tmp_path / "FINDINGS.md"

    monkeypatch.setattr("msa_core.report.write_report", fake)
    assert report_main(["--out-dir", str(tmp_path), "--quick"]) == 0
    assert calls == {"out_dir": str(tmp_path), "quick": True}


def test_language_log_likelihood_objective_is_a_per_language_mean():
    # 3 words of length 3 (BOS, char, EOS) in 2 languages; uniform logits over V=4 -> log(1/4) per token
    tokens = torch.tensor([[1, 3, 2], [1, 3, 2], [1, 3, 2]])
    lengths = torch.tensor([3, 3, 3])
    objective = LanguageLogLikelihood(tokens, lengths, torch.tensor([0, 0, 1]), ["a", "b"])
    logits = torch.zeros(2, 3, 3, 4)  # 2 coalitions
    values = objective(logits)
    np.testing.assert_allclose(values.numpy(), np.full((2, 2), np.log(0.25)), rtol=1e-6)
    # additive: the shares of two slices add up to the whole
    part = objective(logits[:, :2], slice(0, 2)) + objective(logits[:, 2:], slice(2, 3))
    np.testing.assert_allclose(part.numpy(), values.numpy(), rtol=1e-6)
