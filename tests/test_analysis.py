"""Analyses over results and games, each on a case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from msa_core import lesion_game, shapley_modes
from msa_core.analysis import (
    activation_ranking,
    area_under_curve,
    cluster_modes,
    concentration_table,
    distributed_index,
    hub_share,
    layer_modes,
    layer_summary,
    leave_one_out_ranking,
    lesion_cluster,
    lesion_curve,
    lesion_curves,
    mode_correlation,
    pairwise_interactions,
    prefix_coalitions,
    radial_power_spectrum,
    random_lesion_curve,
    shapley_ranking,
    specialist_lesion_effect,
    specialist_table,
    specificity,
    spatial_frequency_profile,
    spectral_centroid,
    top_specialists,
    unit_activations,
    units_to_reach,
    weight_norm_ranking,
)
from msa_core.result import ShapleyResult

W = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0], dtype=torch.float64)


def additive(coalitions: torch.Tensor) -> torch.Tensor:
    return coalitions.double() @ W


def result_of(values, labels=None) -> ShapleyResult:
    values = torch.as_tensor(np.asarray(values, dtype=np.float64))
    shape = values.shape[1:]
    return ShapleyResult(
        values=values, stderr=None, n_evaluations=0, intact=values.sum(0), empty=torch.zeros(shape, dtype=torch.float64),
        method="exact", unit_labels=labels or [],
    )


# ------------------------------------------------------------------ lesion curves
def test_prefix_coalitions_remove_units_cumulatively():
    c = prefix_coalitions([2, 0], 3)
    assert c.tolist() == [[True, True, True], [True, True, False], [False, True, False]]
    both = prefix_coalitions([[0, 1, 2], [2, 1, 0]], 3)
    assert both.shape == (8, 3) and both[4].all() and not both[7].any()


def test_lesion_curve_of_an_additive_game():
    curve = lesion_curve(additive, [0, 1, 2, 3, 4], n_players=5, label="best")
    np.testing.assert_allclose(curve.values, [10, 6, 3, 1, 0, 0])
    reverse = lesion_curve(additive, [4, 3, 2, 1, 0], n_players=5)
    np.testing.assert_allclose(reverse.values, [10, 10, 9, 7, 4, 0])
    assert curve.auc < reverse.auc
    # trapezoid over x = k/5: mean of the two end halves plus the interior
    assert math.isclose(area_under_curve([1.0, 0.0]), 0.5)
    assert units_to_reach(curve, 3.0) == 2 and units_to_reach(curve, -1) is None
    assert curve.to_frame().shape == (6, 5)


def test_shapley_ranking_destroys_the_game_fastest():
    result = shapley_modes(additive, 5, method="exact")
    desc = shapley_ranking(result)
    asc = shapley_ranking(result, descending=False)
    assert desc.tolist() == [0, 1, 2, 3, 4] and asc.tolist() == [4, 3, 2, 1, 0]
    curves = lesion_curves(additive, {"shapley": desc, "ascending": asc}, n_players=5)
    rand = random_lesion_curve(additive, n_orders=30, n_players=5, seed=0)
    assert curves["shapley"].auc < rand.auc < curves["ascending"].auc
    assert np.all(rand.lower <= rand.values + 1e-12) and np.all(rand.values <= rand.upper + 1e-12)
    assert rand.extra["curves"].shape == (30, 6)
    # the same seed gives the same band
    again = random_lesion_curve(additive, n_orders=30, n_players=5, seed=0)
    np.testing.assert_array_equal(again.values, rand.values)


def test_shapley_ranking_of_a_vector_by_one_output_or_the_sum():
    values = np.array([[1.0, 0.0], [0.0, 5.0], [2.0, 2.0]])
    assert shapley_ranking(values).tolist() == [1, 2, 0]
    assert shapley_ranking(values, output=0).tolist() == [2, 0, 1]


def _mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [1.0, 1.0, 1.0]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0.5]]))
        model[2].bias.zero_()
    inputs = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 2.0]])
    return model, inputs


def test_activation_and_weight_rankings_of_a_known_mlp():
    model, inputs = _mlp()
    game = lesion_game(model, "1", inputs, objective=lambda out: out.sum(dim=(1, 2)))
    # mean |ReLU output| per hidden unit: (1.5, 1.0, 4.5, 3.5)
    np.testing.assert_allclose(unit_activations(game), [1.5, 1.0, 4.5, 3.5])
    assert activation_ranking(game).tolist() == [2, 3, 0, 1]
    # incoming rows: norms 1, 2, 3, sqrt(3); outgoing columns: 1, 1, 0, 0.5
    assert weight_norm_ranking(game, direction="incoming").tolist() == [2, 1, 3, 0]
    assert weight_norm_ranking(game, direction="outgoing").tolist() == [0, 1, 3, 2]
    assert weight_norm_ranking(game, direction="both").tolist() == [1, 0, 3, 2]
    assert not model._forward_hooks and not model[1]._forward_hooks  # hooks removed
    with pytest.raises(ValueError):
        weight_norm_ranking(game, direction="sideways")


def test_weight_norms_of_conv_blocks():
    block = lambda ci, co: nn.Sequential(nn.ConvTranspose2d(ci, co, 2, 2), nn.ReLU())  # noqa: E731
    model = nn.Sequential(block(2, 3), block(3, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        model[0][0].weight[:, 1] *= 3  # channel 1 of block 0 gets larger incoming weights
    game = lesion_game(model, "0", torch.ones(2, 2, 2, 2), objective=lambda out: out.mean(dim=(1, 2, 3, 4)))
    assert weight_norm_ranking(game, direction="incoming")[0] == 1


def test_leave_one_out_ranking():
    order, drops = leave_one_out_ranking(additive, n_players=5, return_scores=True)
    assert order.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(drops, W.numpy())


# ------------------------------------------------------------------ concentration
def test_distributed_index_and_hub_share_known_values():
    assert math.isclose(distributed_index(np.ones(10)), 1.0)
    assert distributed_index(np.r_[1.0, np.zeros(9)]) == 0.0
    # two equal units out of four: entropy log 2 / log 4 = 0.5
    assert math.isclose(distributed_index([1.0, -1.0, 0.0, 0.0]), 0.5)
    assert math.isnan(distributed_index(np.zeros(3)))
    assert hub_share(np.ones(10)) == 0.8
    assert hub_share([8.0, 1.0, 1.0, 0.0, 0.0]) == 0.2
    assert hub_share([4.0, 4.0, 1.0, 1.0]) == 0.5


def test_concentration_table_per_run_and_per_output():
    values = np.zeros((4, 2))
    values[:, 0] = 1.0  # output 0: fully distributed
    values[0, 1] = 2.0  # output 1: one hub
    table = concentration_table(result_of(values), output_labels=["a", "b"])
    assert list(table.index) == ["all", "a", "b"]
    assert math.isclose(table.loc["a", "distributed_index"], 1.0)
    assert table.loc["b", "distributed_index"] == 0.0 and table.loc["b", "n_hubs"] == 1
    # mean contributions (1.5, 0.5, 0.5, 0.5)
    p = np.array([2.25, 0.25, 0.25, 0.25]) / 3.0
    assert math.isclose(table.loc["all", "distributed_index"], float(-(p * np.log(p)).sum() / np.log(4)))


# ------------------------------------------------------------------ modes
def _two_family_modes(rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    a, b = rng.normal(size=20), rng.normal(size=20)
    modes = [a * s + 0.01 * rng.normal(size=20) for s in (1, 2, 3)] + [b * s + 0.01 * rng.normal(size=20) for s in (1, 2)]
    return np.stack(modes)


@pytest.mark.parametrize("method", ["hierarchical", "spectral"])
def test_clustering_recovers_two_families_of_modes(method):
    pytest.importorskip("scipy") if method == "hierarchical" else None
    labels = cluster_modes(_two_family_modes(), 2, method=method)
    assert labels.tolist() == [0, 0, 0, 1, 1]
    corr = mode_correlation(_two_family_modes())
    assert corr.shape == (5, 5) and corr[0, 2] > 0.99 and abs(corr[0, 3]) < 0.9


def test_mode_correlation_of_a_null_unit_is_zero():
    corr = mode_correlation(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    assert corr[0, 1] == 0.0 and corr[1, 1] == 1.0


def test_lesion_cluster_removes_its_members_only():
    out = lesion_cluster(additive, [0, 2], n_players=5)
    assert out["intact"] == 10 and out["lesioned"] == 4 and out["difference"] == 6
    mask = np.array([False, True, False, False, False])
    assert lesion_cluster(additive, mask, n_players=5)["difference"] == 3


def test_layer_modes_and_summary_add_up_by_efficiency():
    values = np.arange(12, dtype=float).reshape(4, 3)
    result = result_of(values, ["a:0", "a:1", "b:0", "b:1"])
    modes = layer_modes(result)
    np.testing.assert_allclose(modes["a"] + modes["b"], values.sum(0))
    table = layer_summary(result)
    assert table.loc["a", "n_units"] == 2 and table.loc["b", "total"] == values[2:].sum()
    assert math.isclose(table["share"].sum(), 1.0)


def test_radial_power_spectrum_peaks_at_the_frequency_of_a_grating():
    x = np.arange(32)
    low = np.tile(np.cos(2 * np.pi * 2 * x / 32), (32, 1))  # 2 cycles per 32 px = 0.0625
    high = np.tile(np.cos(2 * np.pi * 12 * x / 32), (32, 1))  # 0.375
    f_low, p_low = radial_power_spectrum(low)
    f_high, p_high = radial_power_spectrum(high)
    assert abs(f_low[p_low.argmax()] - 0.0625) <= 1 / 32
    assert abs(f_high[p_high.argmax()] - 0.375) <= 1 / 32
    values = np.stack([low[None], 2 * low[None], high[None]])  # modes (3, 1, 32, 32)
    profile = spatial_frequency_profile(result_of(values, ["coarse:0", "coarse:1", "fine:0"]))
    assert list(profile.index) == ["coarse", "fine"]
    np.testing.assert_allclose(profile.sum(axis=1), 1.0)
    centroid = spectral_centroid(profile)
    assert centroid["coarse"] < centroid["fine"]


# ------------------------------------------------------------------ specialisation
def test_specificity_and_specialist_lesions():
    # unit 0 serves output 0 only, unit 1 output 1 only, unit 2 both equally
    values = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    s = specificity(values)
    np.testing.assert_allclose(s, [[2, -2], [-3, 3], [0, 0]])
    assert top_specialists(values, 0, 1).tolist() == [0]
    assert top_specialists(values, 1, 2).tolist() == [1, 2]

    def game(c):
        c = c.double()
        return torch.stack([2 * c[:, 0] + c[:, 2], 3 * c[:, 1] + c[:, 2]], 1)

    effect = specialist_lesion_effect(game, [0], 0, n_players=3)
    np.testing.assert_allclose(effect["drop"], [2.0, 0.0])
    assert effect["selectivity"] == 2.0
    result = shapley_modes(game, 3, method="exact", unit_labels=["u0", "u1", "u2"])
    table = specialist_table(result, game, k=1, output_labels=["x", "y"])
    assert table.loc["x", "specialists"] == "u0" and table.loc["y", "specialists"] == "u1"
    assert table.loc["y", "target_drop"] == 3.0 and table.loc["y", "other_drop"] == 0.0


# ------------------------------------------------------------------ interactions
def interaction_game(c: torch.Tensor) -> torch.Tensor:
    """6 players, output (2,): singletons, a synergy {0,1}, a redundancy {2,3} and a triple {0,2,4}."""
    c = c.double()
    v = c @ torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5, 0.3], dtype=torch.float64)
    v = v + 3 * c[:, 0] * c[:, 1] - 2 * c[:, 2] * c[:, 3] + 1.5 * c[:, 0] * c[:, 2] * c[:, 4]
    return torch.stack([v, v * c[:, 5] - c[:, 1]], 1)


def exact_interaction(game, n, i, j):
    """Keinan's gamma_ij from exact values: merged game, and each unit with its partner lesioned."""
    others = [p for p in range(n) if p not in (i, j)]

    def merged(c):
        full = torch.zeros((c.shape[0], n), dtype=torch.bool)
        full[:, others] = c[:, : n - 2]
        full[:, i] = c[:, n - 2]
        full[:, j] = c[:, n - 2]
        return game(full)

    def without(lesioned):
        keep = [p for p in range(n) if p != lesioned]

        def sub(c):
            full = torch.zeros((c.shape[0], n), dtype=torch.bool)
            full[:, keep] = c
            return game(full)

        return sub, keep

    phi_merged = shapley_modes(merged, n - 1, method="exact").values[n - 2]
    sub_j, keep_j = without(j)
    sub_i, keep_i = without(i)
    phi_i = shapley_modes(sub_j, n - 1, method="exact").values[keep_j.index(i)]
    phi_j = shapley_modes(sub_i, n - 1, method="exact").values[keep_i.index(j)]
    return phi_merged - phi_i - phi_j


def test_pairwise_interactions_match_exact_values():
    units = [0, 1, 2, 4]
    result = pairwise_interactions(interaction_game, units, n_players=6, n_permutations=3000, seed=0)
    assert result.gamma.shape == (4, 4, 2)
    assert result.n_evaluations == 2 + 3000 * (5 + 3 * 6)
    for a in range(4):
        assert np.all(result.gamma[a, a] == 0)
        for b in range(a + 1, 4):
            exact = exact_interaction(interaction_game, 6, units[a], units[b]).numpy()
            np.testing.assert_allclose(result.gamma[a, b], result.gamma[b, a])
            np.testing.assert_allclose(result.gamma[a, b], exact, atol=5 * result.stderr[a, b].max() + 1e-9)
    # a pure pair synergy c gives gamma = c: output 0 of {0, 1} has the synergy 3 and nothing else
    assert abs(result.gamma[0, 1, 0] - 3.0) < 5 * result.stderr[0, 1, 0] + 1e-9
    frame = result.to_frame()
    assert len(frame) == 6 and set(frame.columns) == {"unit_i", "unit_j", "gamma", "stderr"}


def test_pairwise_interactions_phi_matches_permutation_run():
    result = pairwise_interactions(interaction_game, [0, 3], n_players=6, n_permutations=50, seed=7)
    run = shapley_modes(interaction_game, 6, method="permutation", n_permutations=50, seed=7)
    np.testing.assert_allclose(result.phi, run.values[[0, 3]].numpy(), atol=1e-12)


def test_pairwise_interactions_reject_bad_units():
    with pytest.raises(ValueError):
        pairwise_interactions(additive, [1], n_players=5)
    with pytest.raises(ValueError):
        pairwise_interactions(additive, [1, 9], n_players=5)
