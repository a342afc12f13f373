"""Top-k identification by a multi-armed bandit with empirical-Bernstein bounds (Neuron Shapley).

Ghorbani & Zou (2020) observe that one often needs only *which* units are the k most responsible,
not every value precisely. Each unit is an arm; pulling it draws its marginal contribution (a scalar
summary of the game) in a random join order. After every round each unit gets a confidence
interval from the empirical Bernstein inequality (Maurer & Pontil 2009, Thm 4)::

    |mean_i - phi_i| <= sqrt(2 V_i log(2/d) / t_i) + 7 R log(2/d) / (3 (t_i - 1))

with ``V_i`` the sample variance, ``t_i`` the samples, ``R`` the range of marginals and ``d`` the
per-unit, per-round confidence ``delta / (n r (r + 1))`` (a union bound over units and rounds that
sums to ``delta``). Unit ``i`` is *resolved in* the top k when fewer than ``k`` other units could lie
above it (``#{j: ucb_j > lcb_i} < k``) and *resolved out* when at least ``k`` units are surely above
it (``#{j: lcb_j > ucb_i} >= k``). Only unresolved units are sampled further, each with two
evaluations per join order (before and after it joins); while most units are unresolved a whole
chain (``n - 1`` evaluations for all marginals) is cheaper and is used instead.

The result's ``values`` are each unit's mean marginal (full modes for a tensor game); units stop
being sampled at different times, so efficiency does not hold exactly. ``metadata["topk"]`` says
which units are in the top k and whether the identification is resolved.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from ..result import ShapleyResult
from .base import Estimator, GameRunner, SamplingState, begin_run
from .permutation import chain_marginals, chain_values, draw_permutations, join_positions
from .truncated import summarise

__all__ = ["TopKEstimator", "empirical_bernstein_radius"]


def empirical_bernstein_radius(variance: np.ndarray, count: np.ndarray, value_range: float, delta: float) -> np.ndarray:
    """Empirical-Bernstein half-width ``(n,)``; infinite for units with fewer than two samples."""
    count = np.asarray(count, dtype=np.float64)
    log_term = math.log(2.0 / delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.sqrt(2.0 * np.maximum(variance, 0.0) * log_term / count) + 7.0 * value_range * log_term / (
            3.0 * (count - 1.0)
        )
    return np.where(count >= 2, radius, np.inf)


class TopKEstimator(Estimator):
    """Which ``k`` units have the largest Shapley values (of a scalar summary), with guarantees.

    Args:
        k: how many top units to identify.
        delta: overall failure probability of the confidence bounds.
        summary: scalar summary of a tensor game that ranks units (see
            :func:`~msa_core.estimators.truncated.summarise`; default the mean over outputs).
        permutations_per_round: join orders drawn per round (one batched game call per round).
        min_samples: samples every unit gets before bounds are used.
        value_range: known range ``R`` of a marginal (e.g. 1 for an accuracy); None uses the
            largest range of marginals seen so far.

    The budget (game evaluations) caps what the bandit spends; with ``n_permutations=`` that is what
    plain permutation sampling would spend. Resumable: ``state.extra`` holds the arms' statistics.
    """

    name = "topk"
    adaptive = True

    def __init__(
        self,
        k: int = 5,
        delta: float = 0.05,
        summary: str | int | Callable | None = None,
        permutations_per_round: int = 16,
        min_samples: int = 8,
        value_range: float | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be a positive integer; got {k}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1); got {delta}")
        self.k = int(k)
        self.delta = float(delta)
        self.summary = summary
        self.permutations_per_round = int(permutations_per_round)
        self.min_samples = max(2, int(min_samples))
        self.value_range = value_range

    def evaluations_per_unit(self, n_players: int) -> int:
        return max(0, n_players - 1)

    def _marginals(
        self, runner: GameRunner, perms: torch.Tensor, active: np.ndarray, empty: torch.Tensor, intact: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Marginals ``(m, len(units), *out)`` of ``units`` (all units when a chain is cheaper) in ``perms``."""
        m, n = perms.shape
        out_shape = tuple(empty.shape)
        if 2 * int(active.sum()) >= n - 1:  # a whole chain is cheaper: every unit's marginal
            return chain_marginals(chain_values(runner, perms, empty, intact), perms), np.arange(n)
        pos = join_positions(perms)
        units = np.nonzero(active)[0]
        idx = torch.as_tensor(units)
        before = pos.unsqueeze(1) < pos[:, idx].unsqueeze(2)  # (m, a, n): players ahead of the unit
        after = before.clone()
        after[:, torch.arange(len(units)), idx] = True
        values = runner(torch.cat([before.reshape(-1, n), after.reshape(-1, n)]))
        half = m * len(units)
        return (values[half:] - values[:half]).reshape(m, len(units), *out_shape), units

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        """An upper bound: resolved units stop being sampled, so a run may spend less."""
        plan = super().plan(n_players, budget)
        return {"n_units": plan["n_units"], "evaluations": int(budget) if n_players > 1 else 2}

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
        """The bandit loop; ``state.extra`` holds every arm's sums and counts, so a resumed run
        draws the same join orders (``state.next_unit`` is the next one) and ends identically."""
        started = time.perf_counter()
        n = n_players
        k = min(self.k, n)
        budget = int(budget) if n > 1 else 2
        state, empty, intact = begin_run(runner, state, budget)
        out_shape = tuple(empty.shape)
        arms = state.extra
        if "count" not in arms:
            arms.update(
                sums=torch.zeros((n, *out_shape), dtype=torch.float64, device=runner.device),
                squares=torch.zeros((n, *out_shape), dtype=torch.float64, device=runner.device),
                count=torch.zeros(n, dtype=torch.int64),
                s_sum=torch.zeros(n, dtype=torch.float64),
                s_sq=torch.zeros(n, dtype=torch.float64),
                lo=math.inf, hi=-math.inf, rounds=0,
                active=torch.ones(n, dtype=torch.bool),
                in_top=torch.zeros(n, dtype=torch.bool),
                out_top=torch.zeros(n, dtype=torch.bool),
                lcb=torch.full((n,), -math.inf, dtype=torch.float64),
                ucb=torch.full((n,), math.inf, dtype=torch.float64),
            )
            if n == 1:  # a single player: its value is the whole game, and it is the top unit
                arms["sums"][0], arms["squares"][0] = intact - empty, (intact - empty) ** 2
                arms["count"][0] = 1
                arms["active"][:], arms["in_top"][:] = False, True
        sums = arms["sums"].to(runner.device, torch.float64)
        squares = arms["squares"].to(runner.device, torch.float64)
        count = arms["count"].cpu().numpy().astype(np.int64).copy()
        s_sum = arms["s_sum"].cpu().numpy().astype(np.float64).copy()
        s_sq = arms["s_sq"].cpu().numpy().astype(np.float64).copy()
        lo, hi, rounds = float(arms["lo"]), float(arms["hi"]), int(arms["rounds"])
        active = arms["active"].cpu().numpy().astype(bool).copy()
        in_top = arms["in_top"].cpu().numpy().astype(bool).copy()
        out_top = arms["out_top"].cpu().numpy().astype(bool).copy()
        lcb = arms["lcb"].cpu().numpy().astype(np.float64).copy()
        ucb = arms["ucb"].cpu().numpy().astype(np.float64).copy()
        next_perm = state.next_unit
        while active.any() and n > 1:
            # cost of the next round, to stay within the budget
            per_perm = n - 1 if 2 * int(active.sum()) >= n - 1 else 2 * int(active.sum())
            m = min(self.permutations_per_round, (budget - runner.n_evaluations) // max(1, per_perm))
            if m < 1:
                break
            runner.check_cancel()
            perms = draw_permutations(seed, range(next_perm, next_perm + m), n)
            marginals, units = self._marginals(runner, perms, active, empty, intact)
            next_perm += m
            rounds += 1
            idx = torch.as_tensor(units)
            sums[idx] += marginals.sum(0)
            squares[idx] += (marginals**2).sum(0)
            scalar = summarise(marginals.reshape(-1, *out_shape), self.summary).reshape(m, len(units)).cpu().numpy()
            count[units] += m
            s_sum[units] += scalar.sum(0)
            s_sq[units] += (scalar**2).sum(0)
            lo, hi = min(lo, float(scalar.min())), max(hi, float(scalar.max()))
            mean = s_sum / np.maximum(count, 1)
            variance = np.where(count > 1, (s_sq - count * mean**2) / np.maximum(count - 1, 1), np.inf)
            value_range = self.value_range if self.value_range is not None else max(hi - lo, 1e-12)
            d = self.delta / (n * rounds * (rounds + 1))
            radius = empirical_bernstein_radius(variance, count, value_range, d)
            radius = np.where(count >= self.min_samples, radius, np.inf)
            lcb, ucb = mean - radius, mean + radius
            # i is surely in the top k if fewer than k others could be above it; surely out if k are
            above_possible = (ucb[None, :] > lcb[:, None]).sum(1) - (ucb > lcb)  # exclude j == i
            above_sure = (lcb[None, :] > ucb[:, None]).sum(1)
            in_top = above_possible < k
            out_top = above_sure >= k
            active = ~(in_top | out_top)
            arms.update(
                sums=sums, squares=squares, count=torch.from_numpy(count.copy()), s_sum=torch.from_numpy(s_sum.copy()),
                s_sq=torch.from_numpy(s_sq.copy()), lo=lo, hi=hi, rounds=rounds,
                active=torch.from_numpy(active.copy()), in_top=torch.from_numpy(in_top.copy()),
                out_top=torch.from_numpy(out_top.copy()), lcb=torch.from_numpy(lcb.copy()), ucb=torch.from_numpy(ucb.copy()),
            )
            state.next_unit = next_perm
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
        counts_t = torch.as_tensor(np.maximum(count, 1), dtype=torch.float64, device=runner.device).view(
            n, *([1] * len(out_shape))
        )
        values = sums / counts_t
        variance_full = (squares / counts_t - values**2) * counts_t / torch.clamp(counts_t - 1, min=1)
        stderr = torch.sqrt(torch.clamp(variance_full, min=0) / counts_t)
        mean = s_sum / np.maximum(count, 1)
        ranked = np.argsort(-mean, kind="stable")
        top = sorted(int(i) for i in ranked[:k])
        result = ShapleyResult(
            values=values,
            stderr=stderr,
            n_evaluations=state.n_evaluations,
            intact=intact,
            empty=empty,
            method=self.name,
            seed=seed,
            elapsed_s=time.perf_counter() - started,
            n_samples=next_perm,
        )
        result.metadata["topk"] = {
            "k": k,
            "top_k": top,
            "resolved": bool(not active.any()),
            "in_top_k": [int(i) for i in np.nonzero(in_top)[0]],
            "unresolved": [int(i) for i in np.nonzero(active)[0]],
            "samples_per_unit": [int(c) for c in count],
            "lower_bound": [float(x) for x in lcb],
            "upper_bound": [float(x) for x in ucb],
            "delta": self.delta,
            "rounds": rounds,
            "permutations": next_perm,
        }
        return result
