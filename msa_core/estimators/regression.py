"""Regression estimators of Shapley modes for tensor-valued games: kernel, leverage, kadd, regression_mc.

The Shapley values are the solution of a weighted least-squares problem (Charnes et al. 1988; Lundberg &
Lee 2017): with ``y(S) = v(S) - v(empty)`` and the Shapley kernel ``mu(S) = (n-1) / (binom(n,|S|) |S| (n-|S|))``,

    phi = argmin sum_{0 < |S| < n} mu(S) (y(S) - sum_{i in S} phi_i)^2   s.t.  sum_i phi_i = v(N) - v(empty).

A regression estimator evaluates the coalitions of a :class:`~msa_core.estimators.design.PairedDesign`
and solves the same problem on them, with Horvitz-Thompson weights. The problem is linear in the game
values, so one solve serves every output element: the normal equations ``A = sum w x x^T`` (p x p) and
``B = sum w x y^T`` (p x outputs) are accumulated block by block (memory ``O(p^2 + p * outputs)`` per
replicate group, whatever the number of samples) and the constrained system is solved once, with the
efficiency constraint exact (a KKT system; Covert & Lee 2021).

* ``kernel``: features ``x = 1_S`` (p = n); pair strata allocated by the Shapley kernel's mass.
* ``leverage``: the same regression, strata allocated uniformly over sizes (the leverage scores of the
  problem, Musco & Witter 2025), drawn without replacement and paired.
* ``kadd``: a 2-additive surrogate (Pelegrina et al. 2023): features ``1_S`` and ``1[i, j in S]``
  (p = n (n + 1) / 2), whose Shapley values ``phi_i = m_i + sum_j m_ij / 2`` equal the exact ones when every
  coalition is used, and are exact on any 2-additive game once the design has full rank.
* ``regression_mc``: regression-adjusted Monte Carlo (Witter et al. 2025): the fitted surrogate's exact
  Shapley values plus an unbiased Horvitz-Thompson estimate of the residual game's Shapley values,
  ``sum_S c_i(S) (y(S) - f(S))`` with ``c_i(S) = (|S|-1)!(n-|S|)!/n!`` for ``i in S``, ``-|S|!(n-|S|-1)!/n!``
  otherwise. Cross-fitted: group ``g``'s residuals are taken against the surrogate fitted without group
  ``g``. Each ``c(S)`` sums to zero over players, so efficiency stays exact.

Standard errors: the sampled pairs are dealt into ``G`` replicate groups (census strata have no error).
``kernel``, ``leverage`` and ``kadd`` use the delete-a-group jackknife (Kish & Frankel 1974): ``G`` refits
without one group (the others reweighted by ``G / (G - 1)``),
``se^2 = (G - 1) / G * sum_g (phi_(-g) - mean)^2``. ``regression_mc`` averages the ``G`` cross-fitted
estimates and reports their standard error of the mean. ``G`` is 16, fewer only where
``G * p * outputs`` floats would pass :data:`GROUP_MEMORY_BYTES` (a function of the game's size,
not of ``max_memory``: a bounded run computes the same estimator).

Bounded memory: under ``max_memory``, blocks are sized to the bound; where ``B`` (and ``U``) of every
output do not fit, the game values are spilled to disk and each chunk of output columns is solved on
its own (everything above is linear in ``y`` given the design): :mod:`msa_core.bounded_linear`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from ..result import ShapleyResult
from .base import Estimator, GameRunner, SamplingState, begin_run
from .design import PairedDesign, kernel_size_weights, uniform_size_weights
from .regression_solve import solve_constrained

__all__ = [
    "RegressionEstimator",
    "KernelEstimator",
    "LeverageEstimator",
    "KAdditiveEstimator",
    "RegressionMCEstimator",
    "GROUP_MEMORY_BYTES",
]

GROUP_MEMORY_BYTES = 2**29
"""Bound on the replicate groups' ``B`` accumulators (float64 ``(G + 1, p, outputs)``)."""


def _pair_index(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


class RegressionEstimator(Estimator):
    """Shared machinery: design, streaming normal equations per replicate group, constrained solves.

    Args:
        n_groups: replicate groups for the standard errors (default 16; at least 2).
        order: 1 (linear features, p = n) or 2 (pairwise, p = n (n + 1) / 2).
    """

    name = "regression"
    order = 1
    mc_correction = False
    paired = True

    def __init__(self, n_groups: int = 16, size_features: bool = True) -> None:
        if n_groups < 2:
            raise ValueError(f"n_groups must be at least 2; got {n_groups}")
        self.n_groups = int(n_groups)
        self.size_features = bool(size_features)

    # ------------------------------------------------------------------ design and plan
    def size_weights(self, n_players: int) -> np.ndarray:
        """Share of the units per stratum (see :mod:`.design`)."""
        return kernel_size_weights(n_players, self.paired)

    def evaluations_per_unit(self, n_players: int) -> int:
        return 2 if self.paired else 1  # a unit is a pair (S, N - S), or one coalition

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        """Units and evaluations: ``2 + units * evaluations_per_unit <= budget`` (``2^n`` at most)."""
        if n_players == 1:
            return {"n_units": 0, "evaluations": 2}
        per = self.evaluations_per_unit(n_players)
        units = max(1, (int(budget) - 2) // per)
        if n_players <= 62:
            units = min(units, (2**n_players - 2) // per)
        return {"n_units": int(units), "evaluations": int(2 + per * units)}

    def design(self, n_players: int, budget: int, seed: int, output_size: int) -> PairedDesign:
        """The run's coalition design (a function of its arguments only)."""
        p = self.n_features(n_players)
        fit = GROUP_MEMORY_BYTES // max(1, 8 * p * max(1, output_size)) - 1
        groups = max(2, min(self.n_groups, fit))
        budget = self.plan(n_players, budget)["evaluations"]
        return PairedDesign.build(n_players, budget, self.size_weights(n_players), seed, groups, self.paired)

    def n_features(self, n_players: int) -> int:
        p = n_players if self.order == 1 else n_players * (n_players + 1) // 2
        return p + (self._n_sizes(n_players) if self.size_features else 0)

    def _n_sizes(self, n_players: int) -> int:
        return max(0, n_players - 1 - self.order)

    def features(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Regression features ``(rows, p)`` float64 of bool coalitions ``(rows, n)``.

        With ``size_features``, one indicator per coalition size ``order + 1 .. n - 1`` follows: a function of
        the size alone has Shapley value 0 for every player (``(f(N) - f(empty)) / n`` with both 0),
        and with every coalition the fit's Shapley values stay exact (checked in the tests), but on a
        sample they absorb the part of the game that depends on how many units are intact, which in
        neural networks is most of it (the reason Owen sampling helps). Sizes ``1 .. order`` are left
        out: their indicators are already in the span (``|S| = sum_i x_i``, ``binom(|S|, 2) = sum x_i x_j``),
        and without them the normal equations have no null space.
        """
        z = coalitions.to(torch.float64)
        columns = [z]
        if self.order == 2:
            i, j = _pair_index(coalitions.shape[1])
            columns.append(z[:, i] * z[:, j])
        if self.size_features:
            n = coalitions.shape[1]
            sizes = coalitions.sum(1, keepdim=True)
            columns.append((sizes == torch.arange(self.order + 1, n).view(1, -1)).to(torch.float64))
        return torch.cat(columns, dim=1) if len(columns) > 1 else z

    def shapley_map(self, n_players: int) -> torch.Tensor:
        """``T`` ``(n, p)``: Shapley values of the surrogate with coefficients ``m`` are ``T @ m``."""
        columns = [torch.eye(n_players, dtype=torch.float64)]
        if self.order == 2:
            i, j = _pair_index(n_players)
            pairs = torch.zeros((n_players, len(i)), dtype=torch.float64)
            pairs[i, torch.arange(len(i))] = 0.5
            pairs[j, torch.arange(len(i))] = 0.5
            columns.append(pairs)
        if self.size_features:  # size indicators have Shapley value 0
            columns.append(torch.zeros((n_players, self._n_sizes(n_players)), dtype=torch.float64))
        return torch.cat(columns, dim=1)

    # ------------------------------------------------------------------ accumulation
    def _new_sums(self, n: int, p: int, groups: int, out: int, device: torch.device) -> dict[str, torch.Tensor]:
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=device)  # noqa: E731
        sums = {"A": zeros(groups + 1, p, p), "B": zeros(groups + 1, p, out)}
        if self.mc_correction:
            sums.update(U=zeros(groups + 1, n, out), K=zeros(groups + 1, n, p))
        return sums

    def _accumulate(self, sums: dict[str, torch.Tensor], coalitions, groups, y, design: PairedDesign,
                    parts: tuple[str, ...] = ("A", "B", "U", "K")) -> None:
        """Add one block's rows to the group sums (slot 0 = census, slot g + 1 = group g).

        ``parts`` names the sums to update: the design-only ``A``/``K`` (``y`` may then be None) and the
        per-output ``B``/``U`` (the bounded path adds them column chunk by column chunk).
        """
        n = design.n
        device = sums["A"].device if "A" in sums else y.device
        sizes = coalitions.sum(1)
        draws = torch.as_tensor(design.per_size_draws, dtype=torch.float64)[sizes]
        k = sizes.to(torch.float64)
        weight = ((n - 1) / (k * (n - k)) / draws).to(device)  # kernel mass of the size / its draws
        x = self.features(coalitions).to(device)
        order = torch.argsort(groups, stable=True)  # contiguous rows per group: one product each
        slots, counts = torch.unique_consecutive(groups[order] + 1, return_counts=True)
        start = 0
        for slot, count in zip(slots.tolist(), counts.tolist()):
            rows = order[start : start + count].to(device)
            start += count
            xw = x[rows] * weight[rows, None]
            if "A" in parts:
                sums["A"][slot] += xw.T @ x[rows]
            if "B" in parts:
                sums["B"][slot] += xw.T @ y[rows]
            if self.mc_correction and ("U" in parts or "K" in parts):
                inside = coalitions[rows.cpu()].to(device)
                kk = k[rows.cpu()].to(device)[:, None]
                # c_i(S) * binom(n, |S|): 1/|S| inside, -1/(n - |S|) outside; / draws = HT weight
                c = torch.where(inside, 1.0 / kk, -1.0 / (n - kk)) / draws[rows.cpu()].to(device)[:, None]
                if "U" in parts:
                    sums["U"][slot] += c.T @ y[rows]
                if "K" in parts:
                    sums["K"][slot] += c.T @ x[rows]

    # ------------------------------------------------------------------ solving
    _solve = staticmethod(solve_constrained)  # the KKT solve of every replicate: .regression_solve

    def _estimates(self, sums, design: PairedDesign, gap: torch.Tensor,
                   factors: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(phi, stderr)`` flat ``(n, out)`` from the group sums (stderr None without replicates)."""
        G = design.n_groups
        T = self.shapley_map(design.n).to(gap.device)
        total = {name: value.sum(0) for name, value in sums.items()}
        if G < 2:
            m = self._solve(total["A"][None], total["B"][None], gap, factors)[0]
            phi = T @ m
            if self.mc_correction:
                phi = phi + total["U"] - total["K"] @ m
            return phi, None
        scale = G / (G - 1)
        sampled = {name: value[1:].sum(0) for name, value in sums.items()}
        # slot 0: every sample; slot g + 1: without group g (the others reweighted by G / (G - 1))
        held_out = {
            name: torch.cat([total[name][None], sums[name][0] + scale * (sampled[name] - sums[name][1:])])
            for name in ("A", "B")
        }
        m = self._solve(held_out["A"], held_out["B"], gap, factors)  # (G + 1, p, out)
        replicates = T @ m[1:]  # (G, n, out)
        if self.mc_correction:  # surrogate without group g, residuals of group g (and of the census)
            census = sums["U"][0] - sums["K"][0] @ m[1:]
            replicates = replicates + census + G * (sums["U"][1:] - sums["K"][1:] @ m[1:])
            return replicates.mean(0), replicates.std(0, correction=1) / math.sqrt(G)
        phi = T @ m[0]
        stderr = torch.sqrt((G - 1) / G * ((replicates - replicates.mean(0)) ** 2).sum(0))
        return phi, stderr

    # ------------------------------------------------------------------ the run
    def pairs_per_block(self, n_players: int, output_size: int) -> int:
        """Pairs merged per block: bounds memory; a function of the game's size only."""
        per_pair = 2 * max(1, output_size) + 2 * self.n_features(n_players)
        return int(max(1, min(512, 2**23 // per_pair)))

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
        """Evaluate the design's pairs block by block, then solve (see the module docstring).

        ``max_memory`` (bytes; None: unbounded) bounds the run's arrays: blocks are sized to it, and
        where the normal equations of every output do not fit, the game values are spilled to disk
        and solved by output column chunks (:mod:`msa_core.bounded_linear`; ``scratch_dir`` holds
        the spill, ``coalitions x outputs x 8`` bytes).
        """
        started = time.perf_counter()
        n = n_players
        plan = self.plan(n, budget)
        state, empty, intact = begin_run(runner, state, plan["evaluations"])
        out_shape = tuple(empty.shape)
        out = max(1, math.prod(out_shape))
        gap = (intact - empty).reshape(-1)
        if n == 1:
            return self._result(gap.reshape(1, *out_shape), torch.zeros((1, *out_shape), dtype=torch.float64), state, seed, started, 0)
        design = self.design(n, budget, seed, out)
        block = self.pairs_per_block(n, out)
        memory = None
        if max_memory is not None or "spill" in state.extra:
            from .spilled import finish_spill, regression_memory_plan, regression_spill

            memory = regression_memory_plan(self, design, out, int(max_memory or 2**62), on_block is not None,
                                            force_spill="spill" in state.extra)
            if memory.mode == "spill":
                values, stderr, spill = regression_spill(self, runner, design, state, empty, gap, memory,
                                                         scratch_dir, on_block)
                result = self._result(values, stderr, state, seed, started, design.n_pairs)
                return finish_spill(spill, result, memory)
            block = memory.block
        if "A" not in state.extra or "B" not in state.extra:
            state.extra.update(self._new_sums(n, self.n_features(n), design.n_groups, out, runner.device))
        sums = {name: state.extra[name].to(runner.device, torch.float64) for name in ("A", "B", "U", "K") if name in state.extra}
        while state.next_unit < design.n_pairs:
            runner.check_cancel()
            pairs = range(state.next_unit, min(design.n_pairs, state.next_unit + block))
            coalitions, groups = design.coalitions(pairs)
            y = runner(coalitions).reshape(coalitions.shape[0], out) - empty.reshape(1, out)
            self._accumulate(sums, coalitions, groups, y, design)
            state.extra.update(sums)
            state.next_unit = pairs.stop
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
        phi, stderr = self.solve_outputs(sums, design, gap)
        values = phi.reshape(n, *out_shape)
        result = self._result(values, stderr.reshape(n, *out_shape), state, seed, started, design.n_pairs)
        if memory is not None:
            result.metadata["memory"] = memory.describe()
        return result

    def solve_outputs(self, sums: dict[str, torch.Tensor], design: PairedDesign, gap: torch.Tensor,
                      factors: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi, stderr)`` ``(n, outputs)`` of the group sums, efficiency exact (stderr 0 for a census).

        Per output column: the bounded path calls it on column chunks of ``B``/``U`` and ``gap``,
        with one ``factors`` cache for all chunks (see :func:`~msa_core.estimators.regression_solve.solve_constrained`).
        """
        phi, stderr = self._estimates(sums, design, gap, factors)
        phi = phi + (gap - phi.sum(0)) / design.n  # the KKT solve leaves only rounding: spread it evenly
        if stderr is None:  # every coalition was enumerated: no sampling error
            stderr = torch.zeros_like(phi)
        return phi, stderr

    def _result(self, values, stderr, state: SamplingState, seed: int, started: float, pairs: int) -> ShapleyResult:
        return state.to_result(values, stderr, method=self.name, seed=seed, elapsed_s=time.perf_counter() - started,
                               n_samples=pairs)


class KernelEstimator(RegressionEstimator):
    """Paired KernelSHAP with exact efficiency; pair strata allocated by the Shapley kernel's mass."""

    name = "kernel"


class LeverageEstimator(RegressionEstimator):
    """Leverage SHAP: pair strata allocated uniformly over sizes, drawn without replacement, paired."""

    name = "leverage"

    def size_weights(self, n_players: int) -> np.ndarray:
        return uniform_size_weights(n_players, self.paired)


class KAdditiveEstimator(RegressionEstimator):
    """2-additive regression (kADD-SHAP): pairwise surrogate, its exact Shapley values.

    On a *paired* design the 2-additive fit's Shapley values equal paired KernelSHAP's (the pair
    features of ``S`` and ``N - S`` differ by linear terms; checked in the tests), so ``kadd`` samples
    single coalitions, as Pelegrina et al. do: the surrogate then earns its ``n (n - 1) / 2`` extra
    features, and is exact on a 2-additive game from ``n (n + 1) / 2`` well-spread coalitions on.

    Args:
        n_groups: replicate groups for the standard errors.
        size_weights: "kernel" (default) or "uniform" allocation of the size strata.
        paired: sample pairs ``(S, N - S)`` instead (then equal to ``kernel``).
    """

    name = "kadd"
    order = 2

    def __init__(self, n_groups: int = 16, size_weights: str = "kernel", paired: bool = False, size_features: bool = True) -> None:
        super().__init__(n_groups, size_features)
        if size_weights not in ("kernel", "uniform"):
            raise ValueError(f"size_weights must be 'kernel' or 'uniform'; got {size_weights!r}")
        self.allocation = size_weights
        self.paired = bool(paired)

    def size_weights(self, n_players: int) -> np.ndarray:
        weights = kernel_size_weights if self.allocation == "kernel" else uniform_size_weights
        return weights(n_players, self.paired)


class RegressionMCEstimator(KAdditiveEstimator):
    """Regression-adjusted Monte Carlo: surrogate Shapley values + cross-fitted residual correction.

    Args:
        n_groups: replicate groups (cross-fitting folds and the standard error).
        size_weights: "uniform" (default: the residual estimate needs every size) or "kernel".
        order: surrogate order, 2 (pairwise, default) or 1 (linear; for large ``n``).
    """

    name = "regression_mc"
    mc_correction = True

    def __init__(
        self, n_groups: int = 16, size_weights: str = "uniform", order: int = 2, paired: bool = True, size_features: bool = True
    ) -> None:
        super().__init__(n_groups, size_weights, paired, size_features)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2; got {order}")
        self.order = int(order)
