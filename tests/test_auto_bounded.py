"""``auto`` under a memory bound (its choice is the method that then runs), the regression design's
outline, the spill's file layout, and the truncated method's skipped fraction across a resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from msa_core.estimators import AutoEstimator, RunCancelled, make_estimator, shapley_modes
from msa_core.estimators.design import PairedDesign, kernel_size_weights, uniform_size_weights
from msa_core.estimators.state import SamplingState
from msa_core.runs import RunSpec, RunStore, execute
from msa_core.runs.cost import memory_outlook
from msa_core.runs.spec import resolve

from .games_for_tests import UnanimityGame, random_unanimity
from .test_seams import wide_recipe  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny games: one torch thread (see conftest)."""


def test_auto_on_a_fresh_store_checks_the_disk_of_its_nearest_folder(wide_recipe, tmp_path):
    # the store's scratch folder (<store>/arrays) does not exist before the first spill
    spec = RunSpec(wide_recipe, method="auto", budget=20, seed=2)
    record = execute(spec, RunStore(tmp_path / "new" / "store"), max_memory="1MB")
    assert record.result.metadata["auto"] == {"chosen": "kernel"}
    assert record.result.metadata["memory"]["mode"] == "spill"
    game = resolve(spec).game()
    reference = shapley_modes(game, game.n_players, method="kernel", budget=20, seed=2)
    torch.testing.assert_close(torch.as_tensor(record.result.values), reference.values, rtol=1e-10, atol=1e-12)


# 30 players, one output, 100 evaluations: kernel's spilled solve needs 3.36 MB, 3.82 MB with a checkpoint's copies
CHECKPOINTED = 3_600_000


def test_auto_chooses_with_the_runs_checkpoints():
    game = random_unanimity(30, 12, (), seed=4)
    saved = []  # a run that checkpoints (on_block) cannot afford kernel's checkpoint copies: antithetic
    run = shapley_modes(game, 30, method="auto", budget=100, max_memory=CHECKPOINTED, on_block=saved.append)
    assert run.metadata["auto"] == {"chosen": "antithetic"} and saved
    torch.testing.assert_close(run.values.sum(0), game.shapley().sum(0), rtol=1e-12, atol=1e-12)  # efficiency
    unsaved = shapley_modes(game, 30, method="auto", budget=100, max_memory=CHECKPOINTED)
    assert unsaved.metadata["auto"] == {"chosen": "kernel"}
    auto = AutoEstimator()
    assert auto.choose(30, 100, 1, CHECKPOINTED).name == "kernel"
    assert auto.choose(30, 100, 1, CHECKPOINTED, checkpoints=True).name == "antithetic"


def test_the_outlook_of_auto_is_the_checkpointed_choice():
    spec = RunSpec("unused", method="auto", budget=100)
    outlook = memory_outlook(spec, 30, 1, CHECKPOINTED)
    assert (outlook["method"], outlook["error"]) == ("antithetic", None)


def test_auto_counts_the_replicate_groups_the_design_uses(monkeypatch):
    # 6 players, 32 evaluations: 15 pairs, 6 of them in the census, so 9 replicate groups (not 16);
    # with 9 the normal equations of 200 outputs fit in 2 MB, with 16 they would not
    kernel = make_estimator("kernel")
    assert kernel.design(6, 32, 0, 200).n_groups == 9
    monkeypatch.setattr("msa_core.estimators.auto.shutil.disk_usage", lambda _path: shutil._ntuple_diskusage(1, 1, 0))  # no disk to spill on
    game = random_unanimity(6, 10, (200,), seed=1)
    run = shapley_modes(game, 6, method="auto", budget=32, max_memory="2MB", on_block=lambda _state: None)
    assert run.metadata["auto"] == {"chosen": "kernel"} and run.metadata["memory"]["mode"] == "memory"
    assert AutoEstimator().choose(6, 32, 200, 2 * 2**20, checkpoints=True).name == "kernel"


@pytest.mark.parametrize("paired", [True, False])
def test_the_outline_is_the_built_design(paired):
    for n, budget, groups in [(6, 32, 16), (6, 64, 16), (10, 300, 16), (12, 4000, 5), (40, 5000, 16), (7, 20, 2)]:
        for weights in (kernel_size_weights(n, paired), uniform_size_weights(n, paired)):
            outline = PairedDesign.outline(n, budget, weights, groups, paired)
            design = PairedDesign.build(n, budget, weights, 3, groups, paired)
            assert (outline.n, outline.n_pairs, outline.n_groups, outline.paired) == (
                design.n, design.n_pairs, design.n_groups, design.paired)
            np.testing.assert_array_equal(outline.draws, design.draws)
            np.testing.assert_array_equal(outline.census, design.census)
    assert PairedDesign.outline(6, 64, kernel_size_weights(6), 16).n_groups == 0  # every pair enumerated


def test_the_spill_files_hold_many_columns_and_the_values_stay(tmp_path):
    """A tight bound solves one column at a time; the spill's files still hold many columns each, and
    the on-disk result is written in runs of columns: the values are those of an unbounded run."""
    from msa_core.bounded_linear import open_spill, spill_width
    from msa_core.estimators.spilled import regression_memory_plan

    kernel, outputs, bound = make_estimator("kernel"), 2000, 2_400_000
    design = kernel.design(24, 200, 0, outputs)  # 198 coalitions for 46 features: full rank
    plan = regression_memory_plan(kernel, design, outputs, bound, False)
    assert plan.mode == "spill" and plan.width == 1 and plan.result_on_disk
    width = spill_width(plan, 2 * design.n_pairs, outputs)
    assert width == plan.chunk_bytes // (2 * design.n_pairs * 8) > 50
    spill, resumed = open_spill(SamplingState(), plan, 2 * design.n_pairs, outputs, tmp_path)
    assert not resumed and spill.width == width and len(spill.chunks) == -(-outputs // width)
    spill.delete()
    game = random_unanimity(24, 16, (outputs,), seed=7)
    bounded = shapley_modes(game, 24, method="kernel", budget=200, max_memory=bound, scratch_dir=tmp_path)
    unbounded = shapley_modes(game, 24, method="kernel", budget=200)
    assert bounded.metadata["memory"]["width"] == 1 and bounded.on_disk
    torch.testing.assert_close(bounded.values.to_tensor(), unbounded.values, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bounded.stderr.to_tensor(), unbounded.stderr, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------------- truncated across a resume
def _cut_game(outputs: int) -> UnanimityGame:
    """Player 0 carries the game: a walk down from the intact model stops once it is lesioned, at a
    position that varies with the join order."""
    sets = torch.zeros((2, 8), dtype=torch.bool)
    sets[0, 0] = True
    sets[1, [1, 2]] = True
    return UnanimityGame(sets, torch.stack([torch.ones(outputs), torch.full((outputs,), 0.01)]))


class _CancelAfter:
    def __init__(self, saved: list, blocks: int) -> None:
        self.saved, self.blocks = saved, blocks

    def is_set(self) -> bool:
        return len(self.saved) >= self.blocks


@pytest.mark.parametrize("bound, units, mode", [(None, 600, "blocks"), ("1MB", 40, "stream")])
def test_truncated_reports_the_skipped_fraction_of_the_whole_run_after_a_resume(bound, units, mode, tmp_path):
    game, budget = _cut_game(2000), 2 + units * 7
    options = {"budget": budget, "seed": 5, "max_memory": bound, "scratch_dir": tmp_path}
    whole = shapley_modes(game, 8, method="truncated", on_block=lambda _state: None, **options)
    saved: list = []
    with pytest.raises(RunCancelled):
        shapley_modes(game, 8, method="truncated", on_block=lambda state: saved.append(state.state_dict()),
                      cancel=_CancelAfter(saved, 1 if bound is None else units // 3), **options)
    store = RunStore(tmp_path / "store")  # through the checkpoint file, as a resumed run reads it
    store.save_checkpoint("run", saved[-1])
    state = SamplingState.from_state_dict(store.load_checkpoint("run")[0])
    assert 0 < state.next_unit < units
    resumed = shapley_modes(game, 8, method="truncated", state=state, on_block=lambda _state: None, **options)
    assert resumed.metadata["memory"]["mode"] == mode and resumed.metadata["memory"]["block"] < units
    skipped = whole.metadata["truncation"]["skipped_fraction"]
    assert 0.1 < skipped < 0.9
    assert resumed.metadata["truncation"]["skipped_fraction"] == pytest.approx(skipped, rel=1e-12)
    values = [r.values.to_tensor() if r.on_disk else r.values for r in (resumed, whole)]
    torch.testing.assert_close(values[0], values[1], rtol=1e-12, atol=1e-12)
    assert resumed.n_evaluations == whole.n_evaluations
