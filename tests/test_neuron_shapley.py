"""Neuron Shapley's estimators: truncated permutation sampling and the top-k bandit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core import shapley_modes
from msa_core.estimators import METHODS
from msa_core.estimators.topk import TopKEstimator, empirical_bernstein_radius
from msa_core.estimators.truncated import TruncatedEstimator, summarise

# registered here so the tests pass before and after msa_core.estimators registers them itself
METHODS.setdefault("truncated", TruncatedEstimator)
METHODS.setdefault("topk", TopKEstimator)

WEIGHTS = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.0], dtype=torch.float64)


def vector_game(coalitions: torch.Tensor) -> torch.Tensor:
    """8 players, output (2,): additive weights, a pair synergy and a negative triple; not monotone."""
    c = coalitions.double()
    scalar = c @ WEIGHTS + 2 * c[:, 0] * c[:, 3] - 1.5 * c[:, 1] * c[:, 2] * c[:, 4]
    return scalar.unsqueeze(1) * torch.tensor([1.0, 2.0], dtype=torch.float64)


def unanimity_game(coalitions: torch.Tensor) -> torch.Tensor:
    """Monotone sum of unanimity games with positive coefficients (scalar output)."""
    c = coalitions.double()
    return 3 * c[:, 0] * c[:, 1] + 2 * c[:, 2] + c[:, 3] * c[:, 4] * c[:, 5] + 0.5 * c[:, 6]


def test_truncated_keeps_efficiency_and_is_close_to_exact():
    exact = shapley_modes(vector_game, 8, method="exact")
    result = shapley_modes(vector_game, 8, method="truncated", n_permutations=300, seed=1)
    assert result.method == "truncated"
    assert result.efficiency_gap() < 1e-9
    assert result.values.shape == (8, 2)
    assert torch.allclose(result.values, exact.values, atol=0.35)
    assert "truncation" in result.metadata


def test_truncated_with_zero_tolerance_equals_permutation_on_a_monotone_game():
    # once a monotone game's chain reaches v(empty) every later marginal is 0, so truncation is exact
    plain = shapley_modes(unanimity_game, 7, method="permutation", n_permutations=40, seed=3)
    cut = shapley_modes(
        unanimity_game, 7, method="truncated", n_permutations=40, seed=3, estimator_options={"tolerance": 0.0, "chunk": 1}
    )
    assert torch.allclose(plain.values, cut.values, atol=1e-12)
    assert cut.n_evaluations < plain.n_evaluations  # truncation skipped part of the chains
    assert cut.metadata["truncation"]["skipped_fraction"] > 0


def test_truncated_results_do_not_depend_on_batch_size():
    a = shapley_modes(vector_game, 8, method="truncated", n_permutations=30, seed=5, batch_size=3)
    b = shapley_modes(vector_game, 8, method="truncated", n_permutations=30, seed=5)
    assert torch.equal(a.values, b.values)


def test_truncated_stops_at_a_given_floor():
    est = {"tolerance": 0.0, "floor": 1e9}  # never reached: no truncation at all
    plain = shapley_modes(vector_game, 8, method="permutation", n_permutations=20, seed=2)
    cut = shapley_modes(vector_game, 8, method="truncated", n_permutations=20, seed=2, estimator_options=est)
    assert torch.allclose(plain.values, cut.values, atol=1e-12)


def test_truncated_rejects_bad_options():
    with pytest.raises(ValueError):
        TruncatedEstimator(tolerance=-1)
    with pytest.raises(ValueError):
        summarise(torch.zeros(2, 3), "median")


@pytest.mark.parametrize("k", [1, 3])
def test_topk_finds_the_exact_top_units(k):
    exact = shapley_modes(vector_game, 8, method="exact")
    truth = sorted(np.argsort(-exact.values.mean(1).numpy())[:k].tolist())
    result = shapley_modes(vector_game, 8, method="topk", n_permutations=2000, seed=0, estimator_options={"k": k})
    info = result.metadata["topk"]
    assert info["top_k"] == truth
    assert info["resolved"] is True
    assert sorted(info["in_top_k"]) == truth
    assert result.values.shape == (8, 2)
    assert torch.allclose(result.values, exact.values, atol=0.3)
    # the bandit spent fewer samples on units it resolved early
    assert min(info["samples_per_unit"]) < max(info["samples_per_unit"])


def test_topk_reports_unresolved_when_the_budget_is_too_small():
    result = shapley_modes(vector_game, 8, method="topk", n_permutations=3, seed=0, estimator_options={"k": 2})
    info = result.metadata["topk"]
    assert info["resolved"] is False
    assert len(info["top_k"]) == 2
    assert result.n_evaluations <= 2 + 3 * 7


def test_topk_on_a_lesion_game_of_a_small_mlp():
    from msa_core import lesion_game

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1))
    game = lesion_game(model, "1", torch.randn(16, 4), objective=lambda out: out.mean(dim=(1, 2)))
    exact = shapley_modes(game, game.n_players, method="exact")
    truth = sorted(np.argsort(-exact.values.numpy())[:2].tolist())
    result = shapley_modes(game, game.n_players, method="topk", n_permutations=3000, estimator_options={"k": 2})
    assert result.metadata["topk"]["top_k"] == truth


def test_empirical_bernstein_radius_shrinks_with_samples():
    radius = empirical_bernstein_radius(np.array([1.0, 1.0, 1.0]), np.array([1, 10, 1000]), 1.0, 0.05)
    assert np.isinf(radius[0]) and radius[1] > radius[2] > 0


def test_topk_resumes_a_checkpoint_that_kept_sums_of_marginals():
    # the arms' moments were once sums of marginals and of their squares in state.extra
    from msa_core.estimators import SamplingState

    kwargs = dict(method="topk", n_permutations=400, seed=2, estimator_options={"k": 2, "permutations_per_round": 8})
    whole = shapley_modes(vector_game, 8, **kwargs)
    saved = []
    shapley_modes(vector_game, 8, on_block=lambda state: saved.append(state.state_dict()), **kwargs)
    state = SamplingState.from_state_dict(saved[3])
    acc, c = state.accumulator, state.extra["count"].double().view(-1, 1)
    assert acc.counts.tolist() == state.extra["count"].tolist()
    state.extra.update(sums=acc.mean * c, squares=acc.m2 + c * acc.mean**2)
    state.accumulator = type(acc)()
    resumed = shapley_modes(vector_game, 8, state=state, **kwargs)
    assert resumed.metadata["topk"]["top_k"] == whole.metadata["topk"]["top_k"]
    assert resumed.n_evaluations == whole.n_evaluations
    assert torch.allclose(resumed.values, whole.values, rtol=0, atol=1e-12)
    assert torch.allclose(resumed.stderr, whole.stderr, rtol=0, atol=1e-12)
