"""``auto``: the method picked from the number of players, the budget and the game's output size.

The rule (from ``bench/estimator_error.py``; tables in the README):

1. ``2^n <= budget`` (and ``n <= MAX_EXACT_PLAYERS``): ``exact``: every coalition is affordable.
2. Otherwise ``kernel`` (paired KernelSHAP, strata by the Shapley kernel, without replacement):
   the lowest error, or within a few percent of it, on all three tensor games at 150-1,500 evaluations,
   and its cost per output element is that of a linear regression (``p = n`` features), so it also
   serves image games whose ``kadd`` accumulators (``p = n (n + 1) / 2``) would be large.

The choice depends only on ``(n, budget, output size)``, so a resumed run makes the same one.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..result import ShapleyResult
from .base import Estimator, GameRunner, SamplingState, begin_run
from .exact import MAX_EXACT_PLAYERS, ExactEstimator
from .regression import KernelEstimator

__all__ = ["AutoEstimator"]


class AutoEstimator(Estimator):
    """Delegates to the method :meth:`choose` picks; ``result.metadata["auto"]`` names it."""

    name = "auto"

    def choose(self, n_players: int, budget: int, output_size: int = 1) -> Estimator:
        """The estimator this rule runs for ``n_players``, ``budget`` evaluations, ``output_size`` outputs."""
        if n_players <= MAX_EXACT_PLAYERS and 2**n_players <= int(budget):
            return ExactEstimator()
        return KernelEstimator()

    def evaluations_per_unit(self, n_players: int) -> int:
        return 2

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        return self.choose(n_players, budget).plan(n_players, budget)

    def estimate(
        self,
        runner: GameRunner,
        n_players: int,
        *,
        budget: int,
        seed: int = 0,
        state: SamplingState | None = None,
        on_block: Callable[[SamplingState], Any] | None = None,
    ) -> ShapleyResult:
        started = time.perf_counter()
        state, empty, _ = begin_run(runner, state, self.plan(n_players, budget)["evaluations"])
        chosen = self.choose(n_players, budget, max(1, empty.numel()))
        result = chosen.estimate(runner, n_players, budget=budget, seed=seed, state=state, on_block=on_block)
        result.metadata["auto"] = {"chosen": chosen.name}
        result.elapsed_s = time.perf_counter() - started
        return result
