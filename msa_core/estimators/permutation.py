"""Permutation (join-order) sampling: plain Monte Carlo and antithetic pairs.

Along a join order ``pi``, unit ``pi[j]``'s marginal contribution is
``v({pi[0..j]}) - v({pi[0..j-1]})``; averaging over uniformly random orders is unbiased for the
Shapley value (Castro et al. 2009, "Polynomial calculation of the Shapley value based on sampling").
The marginals of one order telescope to ``v(N) - v(empty)``, so efficiency holds for every sample.
A permutation costs ``n - 1`` evaluations: the empty and full coalitions are shared by all of them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..bounded import chain_chunks
from .base import GameRunner, SamplingEstimator

__all__ = [
    "PermutationEstimator",
    "AntitheticEstimator",
    "draw_permutation",
    "draw_permutations",
    "join_positions",
    "prefix_coalitions",
    "chain_values",
    "chain_marginals",
]


def draw_permutation(seed: int, unit: int, n_players: int) -> np.ndarray:
    """The join order of sample unit ``unit``: int64 ``(n_players,)``, a function of ``(seed, unit)``."""
    return np.random.default_rng([seed, unit]).permutation(n_players).astype(np.int64)


def draw_permutations(seed: int, units: range, n_players: int) -> torch.Tensor:
    """Join orders of sample units ``units``: int64 ``(len(units), n_players)``."""
    return torch.from_numpy(np.stack([draw_permutation(seed, u, n_players) for u in units]).reshape(len(units), n_players))


def join_positions(permutations: torch.Tensor) -> torch.Tensor:
    """``positions[p, i]``: where unit ``i`` joins in order ``p``; int64 ``(m, n)``."""
    m, n = permutations.shape
    positions = torch.empty_like(permutations)
    positions.scatter_(1, permutations, torch.arange(n).expand(m, n).contiguous())
    return positions


def prefix_coalitions(permutations: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Prefixes of join orders: bool ``(m, len(lengths), n)``; row ``[p, j]`` has the first
    ``lengths[j]`` units of ``permutations[p]`` intact (the coalitions along a chain)."""
    positions = join_positions(permutations)
    return positions.unsqueeze(1) < torch.as_tensor(lengths).view(1, -1, 1)


def chain_values(
    runner: GameRunner,
    permutations: torch.Tensor,
    empty: torch.Tensor,
    intact: torch.Tensor,
) -> torch.Tensor:
    """Values along join orders: ``(m, n + 1, *output_shape)`` float64.

    Entry ``[p, j]`` is the value of the first ``j`` units of ``permutations[p]`` intact. Uses the
    game's ``evaluate_permutations`` when it has one (prefix sums), else one coalition matrix of
    ``m * (n - 1)`` rows. The endpoints are pinned to the shared ``empty`` and ``intact`` values so
    that every sample's marginals telescope to exactly ``intact - empty``.
    """
    m, n = permutations.shape
    fast = getattr(runner.game, "evaluate_permutations", None)
    if callable(fast) and n > 1:
        runner.check_cancel()
        values = fast(permutations)
        if not isinstance(values, torch.Tensor) or tuple(values.shape[:2]) != (m, n + 1):
            raise ValueError(
                f"evaluate_permutations must return (m, n + 1, *output_shape) = ({m}, {n + 1}, ...); "
                f"got {getattr(values, 'shape', type(values).__name__)}"
            )
        values = values.to(runner.device, torch.float64)
        if not bool(torch.isfinite(values).all()):
            raise ValueError("the game returned NaN or infinity along a join order")
        runner.count(m * (n - 1))
    else:
        coalitions = prefix_coalitions(permutations, torch.arange(1, n)).reshape(m * (n - 1), n)
        inner = runner(coalitions).reshape(m, n - 1, *empty.shape)
        values = torch.empty((m, n + 1, *empty.shape), dtype=torch.float64, device=runner.device)
        values[:, 1:n] = inner
    values[:, 0] = empty
    values[:, n] = intact
    return values


def chain_marginals(values: torch.Tensor, permutations: torch.Tensor) -> torch.Tensor:
    """Per-unit marginal contributions ``(m, n, *output_shape)`` from chain values ``(m, n+1, ...)``."""
    m, n = permutations.shape
    steps = values[:, 1:] - values[:, :-1]  # steps[p, j]: the gain when permutations[p, j] joins
    marginals = torch.empty_like(steps)
    index = permutations.to(steps.device).view(m, n, *([1] * (steps.ndim - 2))).expand_as(steps)
    marginals.scatter_(1, index, steps)
    return marginals


class PermutationEstimator(SamplingEstimator):
    """Plain permutation sampling: one uniformly random join order per sample unit.

    With ``permutations=`` given (int array ``(m, n)``), exactly those join orders are evaluated, in
    order; this reproduces msapy's eager mode on the same permutation space.
    """

    name = "permutation"
    streams = True

    def __init__(self, permutations: np.ndarray | torch.Tensor | None = None) -> None:
        self.permutations = None if permutations is None else torch.as_tensor(np.asarray(permutations), dtype=torch.int64)

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        if self.permutations is not None:  # the given join orders, whatever the budget
            units = int(self.permutations.shape[0])
            return {"n_units": units, "evaluations": 2 + units * self.evaluations_per_unit(n_players)}
        return super().plan(n_players, budget)

    def evaluations_per_unit(self, n_players: int) -> int:
        return max(0, n_players - 1)

    def draw(self, seed: int, units: range, n_players: int) -> torch.Tensor:
        """Join orders ``(len(units), n_players)`` of the given units."""
        if self.permutations is not None:
            return self.permutations[units.start : units.stop]
        return draw_permutations(seed, units, n_players)

    def unit_samples(self, runner, n_players, seed, units, empty, intact):
        permutations = self.draw(seed, units, n_players)
        return chain_marginals(chain_values(runner, permutations, empty, intact), permutations)

    def stream_unit(self, runner, n_players, seed, unit, empty, intact, chunk):
        order = self.draw(seed, range(unit, unit + 1), n_players)[0].to(torch.int64)
        yield from chain_chunks(runner, order, empty, intact, chunk)


class AntitheticEstimator(PermutationEstimator):
    """Antithetic permutation sampling: each random join order is paired with its reverse.

    A unit that joins early in one order joins late in the other, so the pair's two marginals are
    negatively correlated and their average has lower variance (Mitchell et al. 2022, "Sampling
    permutations for Shapley value estimation", JMLR). A sample unit is a pair (2n - 2 evaluations);
    a budget of ``n_permutations`` join orders buys ``n_permutations // 2`` pairs. The standard error is computed
    over pairs, which are i.i.d.
    """

    name = "antithetic"

    def evaluations_per_unit(self, n_players: int) -> int:
        return 2 * max(0, n_players - 1)

    def unit_samples(self, runner, n_players, seed, units, empty, intact):
        forward = self.draw(seed, units, n_players)
        permutations = torch.cat([forward, forward.flip(1)])
        marginals = chain_marginals(chain_values(runner, permutations, empty, intact), permutations)
        k = len(units)
        return (marginals[:k] + marginals[k:]) / 2

    def stream_unit(self, runner, n_players, seed, unit, empty, intact, chunk):
        order = self.draw(seed, range(unit, unit + 1), n_players)[0].to(torch.int64)
        forward = chain_chunks(runner, order, empty, intact, chunk)
        backward = chain_chunks(runner, order, empty, intact, chunk, reverse=True)
        for (players, ahead), (_, behind) in zip(forward, backward):
            yield players, (ahead + behind) / 2
