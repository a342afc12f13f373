"""``auto``: the method picked from the number of players, the budget and the game's output size.

The rule (from ``bench/estimator_error.py``; tables in the README's estimator section):

1. ``2^n <= budget`` (and ``n <= MAX_EXACT_PLAYERS``): ``exact``: every coalition is affordable.
2. The regression cannot be solved within ``max_memory`` even one output column at a time (its
   ``p x p`` normal equations alone do not fit, with a checkpoint's copies where the run checkpoints,
   as :func:`~msa_core.runs.execute` runs always do; :mod:`msa_core.bounded_linear`), or its spilled
   game values (coalitions x outputs x 8 bytes) would not fit on the scratch disk: ``antithetic``,
   which streams within any bound that holds a few of its output rows per step (below that it raises,
   naming the sizes: no method fits). Large outputs alone no longer fall back: the regression then
   spills its game values to disk and solves by output column chunks.
3. ``budget < 20 n``: ``kernel``: at about 10 evaluations per unit it had the lowest error on all three
   benchmark games (mlp-digits, dcgan-digits, moe-lm), 1.0-1.2x the best.
4. Otherwise ``leverage``: from 450 evaluations on 16 units it was within 2% of the best on mlp-digits
   and the best on dcgan-digits (kernel's strata favour sizes 1 and n - 1; leverage spreads the pairs
   evenly over sizes, which pays once the extreme sizes are enumerated).

The choice depends only on ``(n, budget, output size, max_memory, whether the run checkpoints)``; a
checkpoint records it (``state.extra["auto_chosen"]``), so a resumed run makes the same one whatever
its bound.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..memory import resolve_max_memory
from ..result import ShapleyResult
from .base import Estimator, GameRunner, SamplingState, begin_run
from .exact import MAX_EXACT_PLAYERS, ExactEstimator
from .permutation import AntitheticEstimator
from .regression import KernelEstimator, LeverageEstimator

__all__ = ["AutoEstimator"]


class AutoEstimator(Estimator):
    """Delegates to the method :meth:`choose` picks; ``result.metadata["auto"]`` names it."""

    name = "auto"

    def choose(self, n_players: int, budget: int, output_size: int = 1, max_memory: int | None = None,
               scratch_dir: Any = None, *, checkpoints: bool = False) -> Estimator:
        """The estimator this rule runs for ``n_players``, ``budget`` evaluations, ``output_size`` outputs
        within ``max_memory`` bytes (None: the default bound, :func:`~msa_core.memory.resolve_max_memory`)
        and the free disk of ``scratch_dir`` (default: the temp directory). ``checkpoints``: whether the
        run saves checkpoints (a checkpoint copies the regression's sums, so its plan needs more memory);
        :meth:`estimate` passes ``on_block is not None``, as the regression's own plan does."""
        if n_players <= MAX_EXACT_PLAYERS and 2**n_players <= int(budget):
            return ExactEstimator()
        regression = KernelEstimator() if int(budget) < 20 * n_players else LeverageEstimator()
        bound = resolve_max_memory(max_memory)
        if not _regression_fits(regression, n_players, budget, output_size, bound, scratch_dir, checkpoints):
            return AntitheticEstimator()
        return regression

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
        max_memory: int | None = None,
        scratch_dir: Any = None,
    ) -> ShapleyResult:
        started = time.perf_counter()
        state, empty, _ = begin_run(runner, state, self.plan(n_players, budget)["evaluations"])
        saved = state.extra.get("auto_chosen")
        if isinstance(saved, str) and saved in _BY_NAME:
            chosen = _BY_NAME[saved]()
        else:
            chosen = self.choose(n_players, budget, max(1, empty.numel()), max_memory, scratch_dir,
                                 checkpoints=on_block is not None)
            state.extra["auto_chosen"] = chosen.name
        result = chosen.estimate(runner, n_players, budget=budget, seed=seed, state=state, on_block=on_block,
                                 max_memory=max_memory, scratch_dir=scratch_dir)
        result.metadata["auto"] = {"chosen": chosen.name}
        result.elapsed_s = time.perf_counter() - started
        return result


_BY_NAME = {"exact": ExactEstimator, "kernel": KernelEstimator, "leverage": LeverageEstimator,
            "antithetic": AntitheticEstimator}


def _regression_fits(estimator: Any, n_players: int, budget: int, output_size: int, max_memory: int,
                     scratch_dir: Any, checkpoints: bool) -> bool:
    """Whether ``estimator`` can run within ``max_memory`` (in memory, or spilled to a disk with room
    for it), without building its design: the plan needs only the design's outline (its units and the
    replicate groups it uses, :func:`~msa_core.estimators.spilled.regression_outline`)."""
    from .spilled import regression_memory_plan, regression_outline

    if n_players < 2:
        return True  # one player: the regression is the gap itself
    outputs = max(1, int(output_size))
    outline = regression_outline(estimator, n_players, budget, outputs)
    try:
        memory = regression_memory_plan(estimator, outline, outputs, int(max_memory), checkpoints)
    except ValueError:
        return False
    if memory.mode == "memory":
        return True
    folder = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
    return memory.disk_bytes <= shutil.disk_usage(_existing(folder)).free


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest existing parent (a run store's scratch folder is made on first use)."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
