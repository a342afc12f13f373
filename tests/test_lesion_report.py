"""The Lesion curves page's numbers on games whose answer is known: redundant units, AUC, the
explanation of a least-important-first curve below the random band, and the GameRunner path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.analysis import area_under_curve, leave_one_out_ranking, lesion_curve
from msa_core.analysis.lesion_report import RANDOM, RANKINGS, lesion_curve_report, removal_gap
from msa_core.estimators import GameRunner


class RedundantGroupGame:
    """``v(S) = a * [S meets G] + sum_{i not in G} w * [i in S]``: the units of G stand in for each other.

    Exact Shapley values: ``a / |G|`` for each unit of G (the group's worth shared), ``w`` for the others.
    """

    def __init__(self, group: int, a: float, others: int, w: float) -> None:
        self.group, self.a, self.w = group, a, w
        self.n_players = group + others

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        c = coalitions.double()
        return self.a * (c[:, : self.group].sum(1) > 0).double() + self.w * c[:, self.group :].sum(1)

    def shapley(self) -> np.ndarray:
        return np.array([self.a / self.group] * self.group + [self.w] * (self.n_players - self.group))


def test_a_redundant_pair_looks_unimportant_to_removal_yet_holds_half_the_pair_each():
    game = RedundantGroupGame(group=2, a=1.0, others=3, w=0.2)
    exact = shapley_modes(game, game.n_players, method="exact").values.numpy()
    np.testing.assert_allclose(exact, game.shapley(), atol=1e-12)  # 0.5 each: half the pair's worth
    order, drops = leave_one_out_ranking(game, return_scores=True)
    np.testing.assert_allclose(drops[:2], 0.0, atol=1e-12)  # removing one of the pair alone costs nothing
    np.testing.assert_allclose(drops[2:], 0.2, atol=1e-12)
    assert set(order[-2:].tolist()) == {0, 1}  # so leave-one-out ranks the pair last
    # removing both costs the whole pair: what their Shapley values add up to
    both = lesion_curve(game, [0, 1])
    assert both.values[0] - both.values[2] == pytest.approx(exact[:2].sum())


def test_least_important_first_below_the_random_band_is_explained_with_the_right_numbers():
    # four units that back each other up (0.5 each) rank below four additive ones (0.6 each)
    game = RedundantGroupGame(group=4, a=2.0, others=4, w=0.6)
    exact = shapley_modes(game, game.n_players, method="exact")
    report = lesion_curve_report(game, exact, rankings=["shapley", "shapley_ascending", "leave_one_out"],
                                 n_random=40, seed=0)
    ascending = report.curves[RANKINGS["shapley_ascending"]]
    assert sorted(ascending.order[:4].tolist()) == [0, 1, 2, 3]
    # flat while any group member is left, then the whole group's worth at once
    np.testing.assert_allclose(ascending.values[:5], [4.4, 4.4, 4.4, 4.4, 2.4], atol=1e-12)
    assert ascending.values[4] < report.random.lower[4]  # below the random band
    assert report.explanation and "not a bug" in report.explanation[0]
    gap = removal_gap(ascending, report.random, exact.values.numpy(), 4)
    assert gap["drop"] == pytest.approx(2.0) and gap["shapley_sum"] == pytest.approx(2.0)
    # random removal of 4 units: expected Shapley sum 4 * 4.4 / 8, but it rarely takes the whole group
    assert gap["random_shapley_sum"] == pytest.approx(2.2)
    assert gap["random_drop"] < gap["drop"]
    assert f"{gap['drop']:.3f}" in report.explanation[1]
    # the most-important-first curve never needs explaining on this game
    assert RANDOM in report.auc and report.auc[RANKINGS["shapley"]] < report.auc[RANDOM]


def test_auc_is_the_mean_objective_along_the_removal():
    game = RedundantGroupGame(group=4, a=2.0, others=4, w=0.6)
    report = lesion_curve_report(game, game.shapley()[:, None], rankings=["shapley_ascending"], n_random=5)
    curve = report.curves[RANKINGS["shapley_ascending"]]
    x = np.linspace(0, 1, len(curve.values))
    assert report.auc[RANKINGS["shapley_ascending"]] == pytest.approx(np.trapezoid(curve.values, x))
    assert area_under_curve([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert area_under_curve([1.0, 0.0]) == pytest.approx(0.5)
    names = list(report.figure_data()["curves"])
    assert names == [f"{RANKINGS['shapley_ascending']} (AUC {curve.auc:.3f})"]


def test_rankings_a_game_cannot_give_are_skipped_with_a_reason():
    game = RedundantGroupGame(group=2, a=1.0, others=2, w=0.3)  # a plain callable: no model, no activations
    report = lesion_curve_report(game, game.shapley(), n_random=3)
    assert set(report.skipped) == {"activation", "weight_norm"}
    assert all(report.skipped.values())
    assert {RANKINGS["shapley"], RANKINGS["leave_one_out"]} <= set(report.curves)
    with pytest.raises(ValueError, match="unknown ranking"):
        lesion_curve_report(game, game.shapley(), rankings=["nope"])


def test_lesion_curves_go_through_the_game_runner():
    calls = []

    def game(coalitions):
        calls.append(coalitions.shape[0])
        values = coalitions.double().sum(1)
        values[~coalitions.any(1)] = float("nan")  # the all-lesioned coalition breaks this objective
        return values

    game.n_players = 3
    with pytest.raises(ValueError, match="NaN"):  # GameRunner's check, not a silent NaN curve
        lesion_curve(game, [0, 1, 2])

    class Cancelled:
        def is_set(self):
            return True

    runner = GameRunner(lambda c: c.double().sum(1), 3, cancel=Cancelled())
    from msa_core.estimators import RunCancelled

    with pytest.raises(RunCancelled):
        lesion_curve(runner, [0, 1])


def test_a_noisy_run_says_so():
    game = RedundantGroupGame(group=2, a=1.0, others=4, w=0.3)
    exact = shapley_modes(game, game.n_players, method="exact")
    assert not any("noisy" in line for line in lesion_curve_report(game, exact, n_random=3).explanation)
    rough = shapley_modes(game, game.n_players, n_permutations=2, seed=0)
    rough.stderr = torch.full_like(rough.values, 1.0)  # errors far above the values
    assert any("noisy" in line for line in lesion_curve_report(game, rough, n_random=3).explanation)
