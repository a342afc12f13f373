"""The estimators against exact values, the Shapley axioms, msapy, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msa_core import MAX_EXACT_PLAYERS, ShapleyResult, shapley_modes
from msa_core.estimators import RunCancelled, all_coalitions

from .games_for_tests import TableGame, UnanimityGame, random_unanimity

SAMPLERS = ["permutation", "antithetic", "owen"]
ALL_METHODS = ["exact", *SAMPLERS]


def brute_force_shapley(game, n: int) -> torch.Tensor:
    """Shapley values by the textbook formula over every (coalition, player) pair: an independent oracle."""
    coalitions = all_coalitions(n)
    values = game(coalitions)
    codes = {tuple(c.tolist()): k for k, c in enumerate(coalitions)}
    phi = torch.zeros((n, *values.shape[1:]), dtype=torch.float64)
    for i in range(n):
        for k, coalition in enumerate(coalitions):
            if coalition[i]:
                continue
            size = int(coalition.sum())
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            with_i = coalition.clone()
            with_i[i] = True
            phi[i] += weight * (values[codes[tuple(with_i.tolist())]] - values[k])
    return phi


# ---------------------------------------------------------------- random games for the axioms
@st.composite
def table_games(draw, max_players: int = 5):
    n = draw(st.integers(min_value=1, max_value=max_players))
    shape = draw(st.sampled_from([(), (3,), (2, 2)]))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn((2**n, *shape), generator=generator, dtype=torch.float64)
    return TableGame(table, n)


def swap_players(coalitions: torch.Tensor, i: int, j: int) -> torch.Tensor:
    swapped = coalitions.clone()
    swapped[:, [i, j]] = coalitions[:, [j, i]]
    return swapped


@settings(max_examples=40, deadline=None)
@given(game=table_games(), method=st.sampled_from(ALL_METHODS), seed=st.integers(0, 1000))
def test_efficiency_holds_on_every_run(game, method, seed):
    result = shapley_modes(game, game.n_players, method=method, n_permutations=7, seed=seed)
    torch.testing.assert_close(result.values.sum(0), result.intact - result.empty, rtol=0, atol=1e-12)
    assert result.efficiency_gap() < 1e-12


@settings(max_examples=30, deadline=None)
@given(game=table_games(max_players=5))
def test_exact_equals_brute_force_and_symmetry(game):
    n = game.n_players
    exact = shapley_modes(game, n, method="exact")
    torch.testing.assert_close(exact.values, brute_force_shapley(game, n), rtol=0, atol=1e-10)
    if n >= 2:
        # symmetrise players 0 and 1: they become interchangeable and must get equal values
        def symmetric(coalitions):
            return (game(coalitions) + game(swap_players(coalitions, 0, 1))) / 2

        values = shapley_modes(symmetric, n, method="exact").values
        torch.testing.assert_close(values[0], values[1], rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(game=table_games(max_players=5), method=st.sampled_from(ALL_METHODS), seed=st.integers(0, 1000))
def test_null_player_gets_exactly_zero(game, method, seed):
    n = game.n_players + 1  # the extra last player never matters

    def with_null(coalitions):
        return game(coalitions[:, :-1])

    result = shapley_modes(with_null, n, method=method, n_permutations=9, seed=seed)
    # samplers see marginals that are exactly 0; the exact sum cancels up to rounding
    assert float(result.values[-1].abs().max()) <= (1e-12 if method == "exact" else 0.0)


@settings(max_examples=30, deadline=None)
@given(
    first=table_games(max_players=4),
    method=st.sampled_from(["exact", "permutation", "antithetic"]),
    seed=st.integers(0, 1000),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
)
def test_linearity_with_the_same_seed(first, method, seed, a, b):
    n = first.n_players
    generator = torch.Generator().manual_seed(seed)
    second = TableGame(torch.randn(first.table.shape, generator=generator, dtype=torch.float64), n)

    def combined(coalitions):
        return a * first(coalitions) + b * second(coalitions)

    run = lambda g: shapley_modes(g, n, method=method, n_permutations=11, seed=seed).values  # noqa: E731
    torch.testing.assert_close(run(combined), a * run(first) + b * run(second), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- known values
@pytest.mark.parametrize("shape", [(), (4,), (2, 3, 3)])
def test_exact_equals_closed_form_on_unanimity_games(shape):
    game = random_unanimity(n=9, n_terms=12, output_shape=shape, seed=3)
    result = shapley_modes(game, 9, method="exact")
    assert result.values.shape == (9, *shape)
    assert result.stderr is None
    assert result.n_evaluations == 2**9
    torch.testing.assert_close(result.values, game.shapley(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", SAMPLERS)
def test_sampling_converges_to_exact_with_calibrated_stderr(method):
    game = random_unanimity(n=10, n_terms=15, output_shape=(3, 2), seed=11)
    truth = game.shapley()
    small = shapley_modes(game, 10, method=method, n_permutations=100, seed=1)
    large = shapley_modes(game, 10, method=method, n_permutations=3000, seed=1)
    error_small = (small.values - truth).pow(2).mean().sqrt()
    error_large = (large.values - truth).pow(2).mean().sqrt()
    assert error_large < error_small / 2.5  # ~ 1/sqrt(30) = 0.18 in theory
    # calibration: over several seeds, most errors lie within 3 standard errors
    covered = []
    for seed in range(12):
        result = shapley_modes(game, 10, method=method, n_permutations=300, seed=seed)
        covered.append(((result.values - truth).abs() <= 3 * result.stderr + 1e-12).double().mean())
    assert float(torch.stack(covered).mean()) > 0.93
    # and the standard error shrinks like 1 / sqrt(m)
    ratio = float(small.stderr.mean() / large.stderr.mean())
    assert 3.5 < ratio < 8.5  # sqrt(30) = 5.5


def test_permutation_sampling_is_unbiased_over_all_orders():
    """Averaging the marginals over all n! join orders gives the exact values."""
    game = random_unanimity(n=5, n_terms=8, output_shape=(2,), seed=5)
    everything = np.array(list(itertools.permutations(range(5))))
    result = shapley_modes(game, 5, method="permutation", permutations=everything)
    torch.testing.assert_close(result.values, game.shapley(), rtol=0, atol=1e-12)
    assert result.n_samples == 120


def test_same_seed_same_result_any_batch_size_and_different_seed_differs():
    # a lookup-table game: its values cannot depend on the batch, so results must be bit-identical
    generator = torch.Generator().manual_seed(2)
    game = TableGame(torch.randn((2**12, 5), generator=generator, dtype=torch.float64), 12)
    for method in SAMPLERS:
        reference = shapley_modes(game, 12, method=method, n_permutations=40, seed=7)
        for batch_size in (1, 2, 3, 10_000):
            again = shapley_modes(game, 12, method=method, n_permutations=40, seed=7, batch_size=batch_size)
            assert torch.equal(again.values, reference.values), (method, batch_size)
            assert torch.equal(again.stderr, reference.stderr), (method, batch_size)
        other = shapley_modes(game, 12, method=method, n_permutations=40, seed=8)
        assert not torch.equal(other.values, reference.values)


def test_seed_zero_is_a_real_seed():
    game = random_unanimity(n=8, n_terms=10, output_shape=(), seed=4)
    first = shapley_modes(game, 8, n_permutations=20, seed=0)
    second = shapley_modes(game, 8, n_permutations=20, seed=0)
    assert torch.equal(first.values, second.values)


def test_game_is_called_once_per_batch_not_per_coalition():
    game = random_unanimity(n=10, n_terms=10, output_shape=(), seed=0)
    result = shapley_modes(game, 10, method="permutation", n_permutations=50, seed=0)
    assert result.n_evaluations == 2 + 50 * 9
    assert game.calls <= 3  # endpoints + one block (default batch 4096 rows)


def test_progress_reports_done_and_total():
    game = random_unanimity(n=6, n_terms=6, output_shape=(), seed=0)
    seen = []
    result = shapley_modes(game, 6, n_permutations=30, batch_size=16, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (result.n_evaluations, result.n_evaluations)
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))
    assert len(seen) > 5


def test_cancel_stops_a_run():
    class Flag:
        def __init__(self):
            self.calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 3

    game = random_unanimity(n=6, n_terms=6, output_shape=(), seed=0)
    with pytest.raises(RunCancelled):
        shapley_modes(game, 6, n_permutations=500, batch_size=4, cancel=Flag())


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result():
    from msa_core import SamplingState

    game = random_unanimity(n=30, n_terms=40, output_shape=(3,), seed=9)
    reference = shapley_modes(game, 30, n_permutations=600, seed=5)
    saved = []
    shapley_modes(game, 30, n_permutations=600, seed=5, on_block=lambda s: saved.append(s.state_dict()))
    assert len(saved) >= 3
    middle = SamplingState.from_state_dict(saved[1])
    resumed = shapley_modes(game, 30, n_permutations=600, seed=5, state=middle)
    assert torch.equal(resumed.values, reference.values)
    assert torch.equal(resumed.stderr, reference.stderr)
    assert resumed.n_evaluations == reference.n_evaluations


def test_out_of_memory_halves_the_batch_and_keeps_the_result():
    inner = random_unanimity(n=10, n_terms=12, output_shape=(2,), seed=1)

    def fragile(coalitions):
        if coalitions.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return inner(coalitions)

    reference = shapley_modes(inner, 10, n_permutations=30, seed=3)
    result = shapley_modes(fragile, 10, n_permutations=30, seed=3, batch_size=64)
    assert torch.equal(result.values, reference.values)


# ---------------------------------------------------------------- msapy as an oracle
def test_same_permutations_as_msapy_eager_mode_give_the_same_modes():
    msa = pytest.importorskip("msapy.msa")
    n, shape = 8, (3, 2)
    game = random_unanimity(n=n, n_terms=14, output_shape=shape, seed=21)
    rng = np.random.default_rng(0)
    permutations = np.unique(np.stack([rng.permutation(n) for _ in range(60)]), axis=0)
    rng.shuffle(permutations)

    def objective(lesioned):
        coalition = torch.ones((1, n), dtype=torch.bool)
        coalition[0, list(lesioned)] = False
        return game(coalition)[0].numpy()

    table = msa.interface(
        n_permutations=len(permutations),
        elements=list(range(n)),
        objective_function=objective,
        permutation_space=[tuple(int(u) for u in p) for p in permutations],
        lazy=False,
        n_parallel_games=1,
        dual_progress_bars=False,
    )
    theirs = np.asarray(table[list(range(n))].to_numpy()).T.reshape(n, *shape)
    ours = shapley_modes(game, n, method="permutation", permutations=permutations)
    np.testing.assert_allclose(ours.values.numpy(), theirs, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- bad input
def test_exact_refuses_too_many_players():
    game = random_unanimity(n=MAX_EXACT_PLAYERS + 1, n_terms=3, output_shape=(), seed=0)
    with pytest.raises(ValueError, match=r"limit is 20 players"):
        shapley_modes(game, MAX_EXACT_PLAYERS + 1, method="exact")


def test_non_tensor_game_output_is_a_clear_error():
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        shapley_modes(lambda c: [0.0] * c.shape[0], 3)


def test_wrong_batch_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="first dimension must be the batch"):
        shapley_modes(lambda c: torch.zeros(c.shape[0] + 1), 3)


def test_nan_in_game_output_names_the_coalition():
    def game(coalitions):
        values = coalitions.sum(1).double()
        return torch.where(coalitions.sum(1) == 0, torch.nan, values)

    with pytest.raises(ValueError, match=r"NaN or infinity .* lesions units \[0, 1, 2\]"):
        shapley_modes(game, 3, method="exact")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "nope"}, "unknown method 'nope'"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"n_permutations": 0}, "n_permutations must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"permutations": np.array([[0, 1, 1]])}, "row 0 of permutations is not a permutation"),
        ({"permutations": np.zeros((2, 4), dtype=int)}, r"shape \(m, 3\)"),
        ({"unit_labels": ["a"]}, "unit_labels has 1 labels for 3 players"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapley_modes(lambda c: c.sum(1).double(), 3, **kwargs)


# ---------------------------------------------------------------- results
def test_result_round_trip_and_long_frame(tmp_path):
    game = random_unanimity(n=5, n_terms=5, output_shape=(2, 3), seed=0)
    result = shapley_modes(game, 5, method="owen", n_permutations=40, seed=2, unit_labels=list("abcde"))
    path = result.save(tmp_path / "run.npz")
    loaded = ShapleyResult.load(path)
    for name in ("values", "stderr", "intact", "empty"):
        assert torch.equal(getattr(loaded, name), getattr(result, name))
    assert (loaded.n_evaluations, loaded.method, loaded.seed, loaded.unit_labels) == (
        result.n_evaluations, "owen", 2, list("abcde"))
    frame = result.to_frame()
    assert len(frame) == 5 * 6
    assert list(frame.columns) == ["unit", "unit_index", "output_index", "output", "value", "stderr"]
    assert frame.loc[7, "unit"] == "b" and frame.loc[7, "output"] == "(0, 1)"
    assert frame.loc[7, "value"] == pytest.approx(float(result.values[1, 0, 1]))


def test_loading_a_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a ShapleyResult file"):
        ShapleyResult.load(bad)
    with pytest.raises(FileNotFoundError):
        ShapleyResult.load(tmp_path / "missing.npz")


def test_exact_on_a_large_output_streams_in_bounded_blocks():
    """2^12 coalitions of a 4096-value game: blocks must be bounded by the output size, not 2^16 rows."""
    from msa_core.estimators import base

    game = random_unanimity(n=12, n_terms=6, output_shape=(64, 64), seed=1)
    seen = []

    def recording(coalitions):
        seen.append(coalitions.shape[0])
        return game(coalitions)

    original = base.MAX_ELEMENTS_PER_CALL
    try:
        import msa_core.estimators.exact as exact_module

        exact_module.MAX_ELEMENTS_PER_CALL = 4096 * 100  # at most 100 coalitions' values per block
        result = shapley_modes(recording, 12, method="exact")
    finally:
        exact_module.MAX_ELEMENTS_PER_CALL = original
    assert max(seen) <= 100
    torch.testing.assert_close(result.values, game.shapley(), rtol=0, atol=1e-10)
