"""``auto``: the method picked from the number of players, the budget and the game's output size.

The rule (from ``bench/estimator_error.py``; tables in the README's estimator section):

1. ``2^n <= budget`` (and ``n <= MAX_EXACT_PLAYERS``): ``exact``: every coalition is affordable.
2. The regression accumulators would not fit in memory even with 4 replicate groups
   (``4 * (2n) * outputs`` floats over :data:`~msa_core.estimators.regression.GROUP_MEMORY_BYTES`):
   ``antithetic`` (its memory is ``2 n * outputs``).
3. ``budget < 20 n``: ``kernel``: at about 10 evaluations per unit it had the lowest error on all three
   benchmark games (mlp-digits, dcgan-digits, moe-lm), 1.0-1.2x the best.
4. Otherwise ``leverage``: from 450 evaluations on 16 units it was within 2% of the best on mlp-digits
   and the best on dcgan-digits (kernel's strata favour sizes 1 and n - 1; leverage spreads the pairs
   evenly over sizes, which pays once the extreme sizes are enumerated).

The choice depends only on ``(n, budget, output size)``, so a resumed run makes the same one.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..result import ShapleyResult
from .base import Estimator, GameRunner, SamplingState, begin_run
from .exact import MAX_EXACT_PLAYERS, ExactEstimator
from .permutation import AntitheticEstimator
from .regression import GROUP_MEMORY_BYTES, KernelEstimator, LeverageEstimator

__all__ = ["AutoEstimator"]


class AutoEstimator(Estimator):
    """Delegates to the method :meth:`choose` picks; ``result.metadata["auto"]`` names it."""

    name = "auto"

    def choose(self, n_players: int, budget: int, output_size: int = 1) -> Estimator:
        """The estimator this rule runs for ``n_players``, ``budget`` evaluations, ``output_size`` outputs."""
        if n_players <= MAX_EXACT_PLAYERS and 2**n_players <= int(budget):
            return ExactEstimator()
        if 4 * 8 * 2 * n_players * max(1, int(output_size)) > GROUP_MEMORY_BYTES:
            return AntitheticEstimator()
        if int(budget) < 20 * n_players:
            return KernelEstimator()
        return LeverageEstimator()

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
