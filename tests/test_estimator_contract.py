"""The estimator contract, for every method in METHODS: budgets in evaluations, one plan per
estimator, determinism, batch-size invariance, resume == uninterrupted, descriptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core.estimators import (
    METHOD_DESCRIPTIONS,
    METHODS,
    SamplingState,
    budget_from_permutations,
    make_estimator,
    shapley_modes,
)

from .games_for_tests import random_unanimity

N = 8
BUDGET = 180  # below 2^8 = 256: a sampling budget for every sampling method


def _game():
    return random_unanimity(n=N, n_terms=10, output_shape=(2, 3), seed=3)


def _run(method, **kwargs):
    kwargs.setdefault("budget", BUDGET)
    return shapley_modes(_game(), N, method=method, seed=4, **kwargs)


def _same(a, b):
    assert torch.equal(a.values, b.values)
    assert (a.stderr is None and b.stderr is None) or torch.equal(a.stderr, b.stderr)
    assert a.n_evaluations == b.n_evaluations


def test_every_method_has_a_description():
    assert set(METHOD_DESCRIPTIONS) == set(METHODS)
    assert all(text.strip().endswith(".") and len(text) < 240 for text in METHOD_DESCRIPTIONS.values())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_plan_is_what_the_run_spends_and_within_the_budget(method):
    plan = make_estimator(method).plan(N, BUDGET)
    assert set(plan) == {"n_units", "evaluations"} and plan["n_units"] >= 1
    result = _run(method)
    if method == "exact":
        assert plan["evaluations"] == result.n_evaluations == 2**N
    elif make_estimator(method).adaptive:  # the plan is an upper bound
        assert result.n_evaluations <= plan["evaluations"] <= BUDGET
    else:
        assert result.n_evaluations == plan["evaluations"] <= BUDGET


@pytest.mark.parametrize("method", sorted(METHODS))
def test_deterministic_and_independent_of_batch_size(method):
    reference = _run(method)
    for batch_size in (1, 2, 3, 10_000):
        _same(_run(method, batch_size=batch_size), reference)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_from_every_checkpoint_equals_the_uninterrupted_run(method):
    reference = _run(method, batch_size=7)
    saved: list[dict] = []
    _run(method, batch_size=5, on_block=lambda state: saved.append(state.state_dict()))
    assert saved, "on_block was never called"
    for state_dict in saved:
        # through the flat arrays a checkpoint file holds, and back
        state = SamplingState.from_arrays(SamplingState.from_state_dict(state_dict).to_arrays())
        _same(_run(method, batch_size=3, state=state), reference)


def test_budget_and_permutations_agree_and_exclude_each_other():
    by_permutations = shapley_modes(_game(), N, method="permutation", n_permutations=12, seed=1)
    by_budget = shapley_modes(_game(), N, method="permutation", budget=budget_from_permutations(N, 12), seed=1)
    _same(by_permutations, by_budget)
    assert by_budget.n_evaluations == 2 + 12 * (N - 1)
    default = shapley_modes(_game(), N, method="permutation", seed=1)
    assert default.n_samples == 1000
    with pytest.raises(ValueError, match="not both"):
        shapley_modes(_game(), N, budget=100, n_permutations=3)
    with pytest.raises(ValueError, match="budget must be"):
        shapley_modes(_game(), N, budget=1)


def test_state_dict_holds_plain_values_only():
    saved: list[dict] = []
    _run("topk", on_block=lambda state: saved.append(state.state_dict()), estimator_options={"k": 2})

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        return value is None or isinstance(value, (int, float, str, np.ndarray))

    assert saved and all(plain(state) for state in saved)
    assert "count" in saved[-1]["extra"]


def test_topk_k_comes_through_estimator_options():
    result = _run("topk", budget=2000, estimator_options={"k": 2})
    assert result.metadata["topk"]["k"] == 2 and len(result.metadata["topk"]["top_k"]) == 2


def test_analyses_call_games_through_the_game_runner():
    from msa_core.analysis._common import call_game

    calls = []

    def game(coalitions):
        calls.append(coalitions.shape[0])
        values = coalitions.sum(1, keepdim=True).double()
        values[coalitions.all(1)] = float("nan")
        return values.numpy()  # an analysis game may return numpy

    coalitions = torch.zeros((5, 3), dtype=torch.bool)
    assert call_game(game, coalitions, batch_size=2).shape == (5, 1) and calls == [2, 2, 1]
    with pytest.raises(ValueError, match="NaN or infinity"):
        call_game(game, torch.ones((2, 3), dtype=torch.bool))


def test_interactions_share_the_permutation_walk():
    from msa_core.analysis.interactions import pairwise_interactions

    game = _game()
    result = pairwise_interactions(game, [0, 1, 2], n_players=N, n_permutations=20, seed=4)
    plain = shapley_modes(game, N, method="permutation", n_permutations=20, seed=4)
    assert torch.allclose(torch.from_numpy(result.phi), plain.values[:3], atol=1e-12)
    assert result.n_evaluations == 2 + 20 * (N - 1 + 3 * 3)


def test_auto_rule():
    auto = make_estimator("auto")
    assert auto.choose(10, 2**10).name == "exact"
    assert auto.choose(16, 150).name == "kernel"
    assert auto.choose(16, 450).name == "leverage"
    # a bound too small for even one output column of the regression's solve: sampling instead
    assert auto.choose(60, 450, 10, max_memory=2**20).name == "antithetic"
