"""Accuracy of every method on games with known Shapley modes, and the regression estimators' own
guarantees: kadd exact on 2-additive games, efficiency to float precision, null players, calibrated
standard errors, linearity, streaming memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_core.estimators import METHODS, make_estimator, shapley_modes
from msa_core.estimators.design import PairedDesign, allocate_pairs, kernel_size_weights, pair_population

from .games_for_tests import UnanimityGame, random_unanimity

REGRESSION = ["kernel", "leverage", "kadd", "regression_mc"]
SAMPLING = [m for m in sorted(METHODS) if m not in ("exact", "topk")]


def _two_additive(n: int, output_shape=(2,), seed: int = 0) -> UnanimityGame:
    """Carriers of one or two players only: a 2-additive game."""
    generator = torch.Generator().manual_seed(seed)
    singles = torch.eye(n, dtype=torch.bool)
    i, j = torch.triu_indices(n, n, offset=1)
    pairs = torch.zeros((len(i), n), dtype=torch.bool)
    pairs[torch.arange(len(i)), i] = True
    pairs[torch.arange(len(i)), j] = True
    sets = torch.cat([singles, pairs])
    return UnanimityGame(sets, torch.randn((len(sets), *output_shape), generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("method", SAMPLING)
def test_every_sampling_method_converges_to_the_closed_form(method):
    game = random_unanimity(n=11, n_terms=14, output_shape=(2, 2), seed=5)  # 2^11 = 2048 > budgets
    truth = game.shapley()
    small = shapley_modes(game, 11, method=method, budget=200, seed=1)
    large = shapley_modes(game, 11, method=method, budget=2000, seed=1)
    error_small = float((small.values - truth).pow(2).mean().sqrt())
    error_large = float((large.values - truth).pow(2).mean().sqrt())
    assert error_large < 0.75 * error_small
    assert error_large < 0.25 * float(truth.pow(2).mean().sqrt())
    if method != "truncated":  # truncation is biased by design (bounded by its tolerance)
        assert bool(((large.values - truth).abs() <= 5 * large.stderr + 1e-9).all())


@pytest.mark.parametrize("method", [m for m in sorted(METHODS) if m != "topk"])
def test_efficiency_to_float_precision_on_every_run(method):
    game = random_unanimity(n=9, n_terms=12, output_shape=(3,), seed=2)
    for seed in range(2):
        for budget in (40, 300):
            result = shapley_modes(game, 9, method=method, budget=budget, seed=seed)
            scale = float((result.intact - result.empty).abs().max())
            assert result.efficiency_gap() <= 1e-12 * max(1.0, scale)


@pytest.mark.parametrize("paired", [False, True])
def test_kadd_is_exact_on_two_additive_games(paired):
    n = 10  # 55 features; 300 of the 1022 coalitions
    game = _two_additive(n, output_shape=(2, 3), seed=1)
    result = shapley_modes(game, n, method="kadd", budget=300, seed=3, estimator_options={"paired": paired})
    assert result.n_evaluations <= 300
    assert torch.allclose(result.values, game.shapley(), atol=1e-10, rtol=0)
    assert float(result.stderr.max()) < 1e-9  # every replicate fits the same game: no spread


def test_paired_kernelshap_equals_the_paired_two_additive_fit():
    # the pair features of S and N - S differ by linear terms, so on a paired design the 2-additive
    # surrogate's Shapley values are paired KernelSHAP's (and kernel is exact on 2-additive games)
    game = random_unanimity(n=10, n_terms=20, output_shape=(2,), seed=4)
    plain = {"size_features": False}
    kernel = shapley_modes(game, 10, method="kernel", budget=150, seed=2, estimator_options=plain)
    paired_kadd = shapley_modes(game, 10, method="kadd", budget=150, seed=2, estimator_options={"paired": True, **plain})
    assert torch.allclose(kernel.values, paired_kadd.values, atol=1e-10, rtol=0)
    two_additive = _two_additive(10, seed=6)
    exact_again = shapley_modes(two_additive, 10, method="kernel", budget=150, seed=2)
    assert torch.allclose(exact_again.values, two_additive.shapley(), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", REGRESSION + ["auto"])
def test_null_player_is_zero_within_its_standard_error(method):
    base = random_unanimity(n=11, n_terms=12, output_shape=(2,), seed=8)
    sets = base.sets.clone()
    sets[:, 4] = False  # player 4 is in no carrier: a null player
    sets[~sets.any(1), 0] = True
    game = UnanimityGame(sets, base.coefficients)
    result = shapley_modes(game, 11, method=method, budget=300, seed=0)
    assert bool((result.values[4].abs() <= 3 * result.stderr[4] + 1e-10).all())


@pytest.mark.parametrize("method", REGRESSION)
def test_standard_errors_are_calibrated_over_seeds(method):
    game = random_unanimity(n=10, n_terms=14, output_shape=(3,), seed=11)
    truth = game.shapley()
    within = []
    for seed in range(30):
        result = shapley_modes(game, 10, method=method, budget=250, seed=seed)
        within.append(((result.values - truth).abs() <= 3 * result.stderr).double().mean())
    share = float(torch.stack(within).mean())
    assert 0.97 <= share, f"{method}: only {share:.3f} of errors within 3 stderr"


@pytest.mark.parametrize("method", REGRESSION)
def test_regression_estimators_are_linear_in_the_game(method):
    first = random_unanimity(n=9, n_terms=8, output_shape=(2,), seed=1)
    second = random_unanimity(n=9, n_terms=8, output_shape=(2,), seed=2)

    def combined(coalitions):
        return 2.0 * first(coalitions) - 0.5 * second(coalitions)

    run = lambda g: shapley_modes(g, 9, method=method, budget=120, seed=3).values  # noqa: E731
    assert torch.allclose(run(combined), 2.0 * run(first) - 0.5 * run(second), atol=1e-10)


def test_a_budget_covering_every_coalition_is_exact_with_zero_stderr():
    game = random_unanimity(n=7, n_terms=9, output_shape=(2,), seed=3)
    for method in REGRESSION + ["auto"]:
        result = shapley_modes(game, 7, method=method, budget=1000, seed=0)
        assert result.n_evaluations == 2**7
        assert torch.allclose(result.values, game.shapley(), atol=1e-10)
        assert result.stderr is None or float(result.stderr.abs().max()) == 0.0


def test_auto_picks_exact_when_affordable_and_a_regression_otherwise():
    auto = make_estimator("auto")
    assert auto.choose(8, 450).name == "exact"
    assert auto.choose(16, 1500).name in METHODS and auto.choose(16, 1500).name != "exact"
    result = shapley_modes(random_unanimity(n=10, n_terms=6, output_shape=(), seed=0), 10, method="auto", budget=300)
    assert result.metadata["auto"]["chosen"] == auto.choose(10, 300).name


def test_design_draws_distinct_pairs_and_enumerates_small_strata():
    n = 12
    design = PairedDesign.build(n, budget=602, size_weights=kernel_size_weights(n), seed=0, n_groups=16)
    assert design.n_pairs == 300
    codes = {row.tobytes() for row in np.packbits(design.bases, axis=1)}
    assert len(codes) == design.n_pairs  # without replacement
    assert design.census[0] and design.draws[0] == n  # size 1 (and 11) enumerated: the border trick
    draws, census = allocate_pairs(n, int(pair_population(n).sum()), kernel_size_weights(n))
    assert census.all() and (draws == pair_population(n)).all()


def test_accumulators_do_not_grow_with_the_number_of_samples():
    game = random_unanimity(n=10, n_terms=6, output_shape=(4,), seed=0)
    sizes = []
    for budget in (100, 900):
        saved = []
        shapley_modes(game, 10, method="regression_mc", budget=budget, on_block=lambda s: saved.append(s.state_dict()))
        sizes.append(sum(np.asarray(v).nbytes for v in saved[-1]["extra"].values()))
    assert sizes[0] == sizes[1]
