"""The cost estimate's memory outlook (``memory_outlook``, ``estimate_cost(max_memory=...)``): what it says
a run will do under a bound is what the run does."""

from __future__ import annotations

import pytest
import torch

from msa_core.estimators import METHODS
from msa_core.memory import resolve_max_memory
from msa_core.runs import RunSpec, RunStore, estimate_cost, execute
from msa_core.runs.cost import memory_outlook

from .test_seams import wide_recipe  # noqa: F401 - the fixture

OUTPUTS = 6 * 500


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def recipe(wide_recipe) -> str:
    """The seam matrix's float64 recipe with 6 x 500 outputs (5 players)."""
    return wide_recipe


@pytest.mark.parametrize("bound", ["1MB", "2MB", "64MB"])
@pytest.mark.parametrize("method", list(METHODS))
def test_the_outlook_says_what_the_run_does(method, bound, recipe, tmp_path):
    spec = RunSpec(recipe, method=method, budget=120, seed=5)
    outlook = memory_outlook(spec, 5, OUTPUTS, bound)
    assert outlook["max_memory"] == resolve_max_memory(bound) and not outlook["automatic"]
    try:
        record = execute(spec, RunStore(tmp_path / "store"), max_memory=bound)
    except ValueError as error:  # the run refuses the bound: the outlook said so, in the same words
        assert outlook["error"] is not None and outlook["text"].startswith("cannot run within")
        assert str(error).split(";")[0] in outlook["error"] or "keeps its state in memory" in outlook["error"]
        return
    assert outlook["error"] is None, outlook
    memory = record.result.metadata["memory"]
    assert (outlook["mode"], outlook["on_disk"]) == (memory["mode"], memory["on_disk"]), (outlook, memory)
    assert outlook["on_disk"] == record.result.on_disk
    assert outlook["method"] == record.result.metadata.get("auto", {}).get("chosen", method)
    if memory.get("disk_bytes") is not None and outlook["disk_bytes"] is not None:
        assert outlook["disk_bytes"] == memory["disk_bytes"]


def test_the_outlook_of_the_automatic_bound_and_its_texts(recipe, monkeypatch):
    monkeypatch.setenv("MSA_MAX_MEMORY", "1MB")
    spec = RunSpec(recipe, method="permutation", budget=120)
    automatic = memory_outlook(spec, 5, OUTPUTS)
    assert automatic["automatic"] and automatic["max_memory"] == 2**20
    assert automatic["text"] == "streams one sample at a time within 1.0 MB (automatic); accumulators and result on disk"
    assert memory_outlook(spec.replace(method="topk"), 5, OUTPUTS)["text"] == (
        "streams one sample at a time within 1.0 MB (automatic); accumulators and result on disk")
    assert memory_outlook(spec.replace(method="kernel"), 5, OUTPUTS, "1MB")["text"] == (
        "spills 703.1 KB of game values to disk within 1.0 MB; result in memory")
    assert memory_outlook(spec, 5, OUTPUTS, "64MB")["text"] == "in memory, within 64.0 MB"


def test_estimate_cost_probes_under_the_bound_and_skips_a_refused_one(recipe):
    spec = RunSpec(recipe, method="permutation", budget=120, seed=5)
    cost = estimate_cost(spec, probe_seconds=5.0, max_memory="1MB")  # the probe finishes this small run
    assert cost["complete"] and cost["measured_evaluations"] == 118
    assert cost["memory"]["mode"] == "stream" and cost["memory"]["on_disk"]
    refused = estimate_cost(spec.replace(method="owen"), max_memory="1MB")
    assert refused["seconds_low"] is None and "too small for outputs of 3000 values" in refused["memory"]["error"]
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("method", ["kernel", "leverage", "kadd", "regression_mc"])
def test_the_design_outline_is_the_built_design(method):
    from msa_core.estimators import make_estimator
    from msa_core.estimators.spilled import regression_outline  # what the outlook and auto plan with

    estimator = make_estimator(method)
    for n, budget, outputs in [(5, 120, 3000), (12, 300, 1), (40, 5000, 3000), (40, 5000, 10**6), (6, 32, 200)]:
        design, outline = estimator.design(n, budget, 0, outputs), regression_outline(estimator, n, budget, outputs)
        assert (outline.n_groups, outline.n_pairs, outline.paired) == (design.n_groups, design.n_pairs, design.paired)
