"""Shapley estimators behind one entry point, :func:`shapley_modes`.

========== ==================================================== =====================================
method     what it does                                          stderr
========== ==================================================== =====================================
exact      all 2^n coalitions (n <= 20)                          None (no sampling error)
permutation uniformly random join orders (Castro et al. 2009)     over permutations
antithetic each join order paired with its reverse               over pairs
owen       stratified antithetic Owen sampling with an           over sweeps of all strata
           efficiency projection (Okhrati & Lipani 2021)
truncated  permutations cut short once the objective is near     over permutations
           its floor (Neuron Shapley, Ghorbani & Zou 2020)
topk       multi-armed bandit that only resolves which units     per unit (empirical Bernstein)
           are in the top k (Neuron Shapley)
kernel     paired KernelSHAP regression, exact efficiency,       delete-a-group jackknife
           strata by the Shapley kernel (Covert & Lee 2021)
leverage   the same, sizes uniform (Leverage SHAP, Musco &       delete-a-group jackknife
           Witter 2025), without replacement, paired
kadd       2-additive regression surrogate (Pelegrina et al.     delete-a-group jackknife
           2023), single coalitions
regression_mc  surrogate + cross-fitted Monte Carlo residual      over the cross-fitting folds
           correction (Witter et al. 2025)
auto       exact when 2^n fits the budget, else kernel or        that of the chosen method
           leverage by evaluations per unit (see auto.py)
========== ==================================================== =====================================

Every budget is in game evaluations, endpoints included (``budget=``; ``n_permutations=M`` means
``2 + M (n - 1)``); :meth:`Estimator.plan` says what a run will spend.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from ..bounded import STREAMING_METHODS
from ..memory import resolve_max_memory
from ..result import ShapleyResult
from ..types import Game
from .auto import AutoEstimator
from .base import (
    Estimator,
    GameRunner,
    ProgressCallback,
    RunCancelled,
    SamplingEstimator,
    SamplingState,
    budget_from_permutations,
    resolve_budget,
)
from .exact import MAX_EXACT_PLAYERS, ExactEstimator, all_coalitions
from .owen import OwenEstimator
from .permutation import AntitheticEstimator, PermutationEstimator, draw_permutation
from .regression import KAdditiveEstimator, KernelEstimator, LeverageEstimator, RegressionEstimator, RegressionMCEstimator
from .topk import TopKEstimator
from .truncated import TruncatedEstimator

__all__ = [
    "shapley_modes",
    "make_estimator",
    "METHODS",
    "METHOD_DESCRIPTIONS",
    "MAX_EXACT_PLAYERS",
    "budget_from_permutations",
    "resolve_budget",
    "Estimator",
    "SamplingEstimator",
    "SamplingState",
    "GameRunner",
    "RunCancelled",
    "ExactEstimator",
    "PermutationEstimator",
    "AntitheticEstimator",
    "OwenEstimator",
    "TruncatedEstimator",
    "TopKEstimator",
    "RegressionEstimator",
    "KernelEstimator",
    "LeverageEstimator",
    "KAdditiveEstimator",
    "RegressionMCEstimator",
    "AutoEstimator",
    "all_coalitions",
    "draw_permutation",
]

BOUNDED_ESTIMATORS = (SamplingEstimator, ExactEstimator, RegressionEstimator, AutoEstimator, TopKEstimator)
"""Estimators that take ``max_memory`` (every method of :data:`METHODS`)."""

METHODS: dict[str, Callable[..., Estimator]] = {
    "exact": ExactEstimator,
    "permutation": PermutationEstimator,
    "antithetic": AntitheticEstimator,
    "owen": OwenEstimator,
    "truncated": TruncatedEstimator,
    "topk": TopKEstimator,
    "kernel": KernelEstimator,
    "leverage": LeverageEstimator,
    "kadd": KAdditiveEstimator,
    "regression_mc": RegressionMCEstimator,
    "auto": AutoEstimator,
}
"""Estimator factories by method name (keys equal :data:`METHOD_DESCRIPTIONS`'s)."""

METHOD_DESCRIPTIONS: dict[str, str] = {
    "exact": "All 2^n coalitions, no sampling error: use it when 2^n evaluations are affordable (n up to about 16-20).",
    "permutation": "Plain random join orders, unbiased and simple: the baseline, and what msapy computes.",
    "antithetic": "Join orders paired with their reverses: a cheap variance cut over permutation sampling on most games.",
    "owen": "Stratified Owen sampling over how many units are intact: strong on image games whose values depend mostly on that count.",
    "truncated": "Permutations cut short once the objective reaches its floor (Neuron Shapley): saves evaluations on large networks that collapse after a few lesions, at a small bias.",
    "kernel": "Paired KernelSHAP regression with exact efficiency: a strong general choice when the budget is a few evaluations per unit or more.",
    "leverage": "Leverage SHAP (coalition sizes sampled uniformly, without replacement, paired): KernelSHAP's provably accurate variant, good on games with interactions across many sizes.",
    "kadd": "A 2-additive regression surrogate (kADD-SHAP): the most accurate at small budgets when units interact mostly in pairs and n(n+1)/2 features fit.",
    "regression_mc": "The 2-additive surrogate plus an unbiased Monte Carlo correction of its residual: kadd's accuracy without its bias on games with higher-order interactions.",
    "auto": "Picks for you from the number of units, the budget and the output size (exact when 2^n fits the budget, else the most accurate regression estimator): the default.",
    "topk": "A bandit that only settles which k units are the most important (Neuron Shapley): use it when you need the top units, not every value.",
}
"""One sentence per method on when to use it (the Run page and ``msa run --help`` show them)."""


def _check_permutations(permutations: Any, n_players: int) -> torch.Tensor:
    array = np.asarray(permutations)
    if array.ndim != 2 or array.shape[1] != n_players or array.shape[0] == 0:
        raise ValueError(
            f"permutations must be an integer array of shape (m, {n_players}); got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"permutations must hold integers; got dtype {array.dtype}")
    if not (np.sort(array, axis=1) == np.arange(n_players)).all():
        bad = int(np.nonzero(~(np.sort(array, axis=1) == np.arange(n_players)).all(1))[0][0])
        raise ValueError(f"row {bad} of permutations is not a permutation of range({n_players})")
    return torch.from_numpy(array.astype(np.int64))


def make_estimator(method: str, *, permutations: Any = None, n_players: int | None = None, **options: Any) -> Estimator:
    """Build the estimator for ``method`` with its ``options`` (e.g. ``k=5`` for "topk").

    ``permutations`` (int ``(m, n)``, with ``n_players``) only for "permutation" and "antithetic".
    The estimator's ``plan(n_players, budget)`` says what a run will cost.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    factory = METHODS[method]
    if permutations is not None:
        if method not in ("permutation", "antithetic"):
            raise ValueError(f"permutations= is only used by method='permutation' or 'antithetic', not {method!r}")
        return factory(permutations=_check_permutations(permutations, n_players), **options)
    return factory(**options)


def shapley_modes(
    game: Game,
    n_players: int,
    *,
    method: str = "permutation",
    budget: int | None = None,
    n_permutations: int | None = None,
    permutations: Any = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    unit_labels: list[str] | None = None,
    cancel: Any = None,
    state: SamplingState | None = None,
    on_block: Callable[[SamplingState], Any] | None = None,
    estimator_options: dict[str, Any] | None = None,
    max_memory: int | str | None = None,
    scratch_dir: Any = None,
) -> ShapleyResult:
    """Shapley values of every player of ``game``; for a tensor game, Shapley modes.

    Args:
        game: callable taking a bool coalition matrix ``(batch, n_players)`` (True = intact) and
            returning float values ``(batch, *output_shape)``. It is called once per batch.
        n_players: number of players ``n``.
        method: a key of :data:`METHODS` (see :data:`METHOD_DESCRIPTIONS` and the module table).
        budget: game evaluations the run may spend, the two endpoints ``v(empty)``, ``v(N)``
            included; every method plans within it (:meth:`Estimator.plan`). Ignored by "exact".
        n_permutations: the budget as join orders: ``budget = 2 + n_permutations * (n - 1)``.
            Give at most one of ``budget`` and ``n_permutations``; neither means 1000 join orders.
        permutations: optional int array ``(m, n)`` of join orders to evaluate exactly (permutation,
            antithetic); overrides the budget.
        batch_size: coalitions per game call (None: up to 4096, fewer for large outputs). Results do
            not depend on it.
        seed: non-negative integer; the same seed gives the same result on any batch size.
        device: where values are accumulated (default CPU).
        progress: optional callback ``progress(done, total)`` in game evaluations.
        unit_labels: optional labels of the players (default: the game's ``unit_labels`` if it has
            them, e.g. "1:37" for unit 37 of layer "1"; else "0", "1", ...).
        cancel: optional object with ``is_set()`` (e.g. ``threading.Event``); when set, the run stops
            with :class:`RunCancelled`.
        state, on_block: resume from / checkpoint a run of any method (see :class:`SamplingState`):
            ``on_block(state)`` is called after every merged block; a run resumed from any saved
            state ends bit-identical to an uninterrupted one with the same seed and budget.
        estimator_options: options of the estimator (e.g. ``{"n_strata": 8}`` for "owen",
            ``{"k": 5}`` for "topk").
        max_memory: bound on the run's working arrays: bytes or a size such as "4GB" (None: half
            the memory available when the run starts, or ``$MSA_MAX_MEMORY``). Sampling methods size
            their blocks to it; "permutation", "antithetic", "owen", "truncated" and "topk" stream
            one sample unit (topk: one join order of a round) at a time, a chunk of positions or
            players at a time, and keep their accumulators on disk when needed, so they meet any
            bound with the same values, evaluations (and topk's stopping decisions). "exact" and the regressions ("kernel",
            "leverage", "kadd", "regression_mc", and "auto") spill the game values to disk
            (coalitions x outputs x 8 bytes) and solve by output column chunks where their state does
            not fit; they raise ValueError where one output column cannot be solved within the
            bound. See :mod:`msa_core.bounded` and :mod:`msa_core.bounded_linear`.
        scratch_dir: folder for on-disk accumulators and spilled values (default: the temp
            directory); a result computed there keeps its ``values``/``stderr`` there
            (:class:`~msa_core.ondisk.ChunkedArray`).

    Returns:
        :class:`~msa_core.result.ShapleyResult` with ``values`` ``(n, *output_shape)``; ``stderr`` of
        the same shape (None for exact); ``values.sum(0) == intact - empty`` to float precision for
        every method but "topk".
    """
    if not isinstance(n_players, (int, np.integer)) or isinstance(n_players, bool) or n_players < 1:
        raise ValueError(f"n_players must be a positive integer; got {n_players!r}")
    n_players = int(n_players)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    budget = resolve_budget(n_players, budget, n_permutations)
    if unit_labels is not None and len(unit_labels) != n_players:
        raise ValueError(f"unit_labels has {len(unit_labels)} labels for {n_players} players")
    if state is not None and not isinstance(state, SamplingState):
        raise TypeError(f"state must be a SamplingState (SamplingState.from_state_dict); got {type(state).__name__}")
    estimator = make_estimator(method, permutations=permutations, n_players=n_players, **(estimator_options or {}))
    runner = GameRunner(game, n_players, batch_size=batch_size, device=device, progress=progress, cancel=cancel)
    bounds: dict[str, Any] = {}
    if isinstance(estimator, BOUNDED_ESTIMATORS):
        bounds = {"max_memory": resolve_max_memory(max_memory), "scratch_dir": scratch_dir}
    elif max_memory is not None:
        raise ValueError(f"method {method!r} keeps its state in memory and does not take max_memory; use one of "
                         f"{', '.join(STREAMING_METHODS)} or a regression for games that do not fit")
    started = time.perf_counter()
    result = estimator.estimate(runner, n_players, budget=budget, seed=int(seed), state=state, on_block=on_block,
                                **bounds)
    result.elapsed_s = time.perf_counter() - started
    if unit_labels is None:  # a lesion game knows its units' names ("<layer>:<index>")
        game_labels = getattr(game, "unit_labels", None)
        unit_labels = game_labels if game_labels is not None and len(game_labels) == n_players else None
    if unit_labels is not None:
        result.unit_labels = [str(label) for label in unit_labels]
    return result
