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

The modes' moments are a :class:`~msa_core.accumulate.MomentAccumulator` with a sample count per unit
(row), merged one join order at a time; under a tight ``max_memory`` a round's join orders are walked
one at a time, ``chunk`` chain positions or unresolved units per step, into the same accumulator or
its on-disk twin (:class:`~msa_core.accumulate.DiskMoments`), so values and stopping decisions equal
the unbounded run's (see :func:`~msa_core.bounded.memory_plan`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..accumulate import DiskMoments, MomentAccumulator
from ..bounded import chain_chunks, disk_result, memory_plan, scratch_folder
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
    plain permutation sampling would spend. Resumable: ``state.accumulator`` holds the arms' moments
    (one count per unit), ``state.extra`` their summaries' statistics. Takes ``max_memory``.
    """

    name = "topk"
    adaptive = True
    streams = True  # meets any max_memory: rounds walked chunk by chunk, moments on disk

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

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        """An upper bound: resolved units stop being sampled, so a run may spend less."""
        plan = super().plan(n_players, budget)
        return {"n_units": plan["n_units"], "evaluations": int(budget) if n_players > 1 else 2}

    def _pieces(
        self, runner: GameRunner, perms: torch.Tensor, units: np.ndarray, chain: bool, empty: torch.Tensor,
        intact: torch.Tensor, chunk: int,
    ) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        """Marginals of join orders ``perms`` ``(g, n)`` piece by piece: yields ``(p, cols, marginals)``,
        the marginals ``(len(cols), *out)`` of players ``units[cols]`` in join order ``perms[p]``.

        All ``g`` join orders in one game call where ``chunk`` covers a whole chain (or all of
        ``units``), else ``chunk`` positions or units per step (:func:`~msa_core.bounded.chain_chunks`).
        Every row's pieces come in join-order order, so one-at-a-time merges do not depend on how
        join orders are grouped or on ``chunk``.
        """
        g, n = perms.shape
        if chain and chunk >= n:
            marginals = chain_marginals(chain_values(runner, perms, empty, intact), perms)
            for p in range(g):
                yield p, units, marginals[p]
        elif chain:  # units is arange(n): a player is its own column
            for p in range(g):
                for players, marginals in chain_chunks(runner, perms[p], empty, intact, chunk):
                    yield p, players.numpy(), marginals
        else:  # two evaluations per unit: before and after it joins
            pos = join_positions(perms)
            for c0 in range(0, len(units), chunk):
                cols = np.arange(c0, min(len(units), c0 + chunk))
                idx = torch.as_tensor(units[cols])
                before = pos.unsqueeze(1) < pos[:, idx].unsqueeze(2)  # (g, c, n): players ahead of the unit
                after = before.clone()
                after[:, torch.arange(len(cols)), idx] = True
                values = runner(torch.cat([before.reshape(-1, n), after.reshape(-1, n)]))
                marginals = (values[g * len(cols):] - values[: g * len(cols)]).reshape(g, len(cols), *empty.shape)
                for p in range(g):
                    yield p, cols, marginals[p]

    def _merge_round(self, runner: GameRunner, state: SamplingState, pieces: Any, scalar: np.ndarray,
                     units: np.ndarray, shape: tuple[int, ...], split: bool) -> None:
        """Merge the pieces of a step (a few join orders of a round) into ``state.accumulator`` one
        join order at a time (per-row counts) and their summaries into ``scalar`` ``(g, len(units))``.

        A step evaluated in one game call merges nothing before its last evaluation, so a cancel
        may stop it; a ``split`` step is merged as it is evaluated, so a cancel waits for its end
        (the state is then whole) and any other error inside it resets ``state`` to no samples (the
        last checkpoint, taken after a whole step, stays the one to resume from).
        """
        acc, cancel, merged = state.accumulator, runner.cancel, False
        if split:
            runner.cancel = None
        try:
            for p, cols, marginals in pieces:
                if not merged and isinstance(acc, DiskMoments):
                    acc.begin_sample()
                merged = True
                acc.update_rows(torch.as_tensor(units[cols]), marginals, shape)
                scalar[p, cols] = _row_summaries(marginals, self.summary)
            acc.finish_sample()
        except BaseException:
            if merged:
                state.accumulator, state.next_unit, state.n_evaluations = MomentAccumulator(), 0, 2
                state.extra.clear()
            raise
        finally:
            runner.cancel = cancel

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
        """The bandit loop; ``state.accumulator`` holds the arms' moments (a count per unit) and
        ``state.extra`` their summaries' statistics, so a resumed run draws the same join orders
        (``state.next_unit`` is the next one) and ends identically.

        ``max_memory`` (bytes) bounds the working arrays (:func:`~msa_core.bounded.memory_plan`): a
        round's join orders are evaluated a few at a time, or one at a time ``chunk`` positions or
        units per step with the moments on disk under ``scratch_dir``; values, stopping decisions
        and evaluations do not change (each join order is merged on its own in every mode).
        """
        started = time.perf_counter()
        n = n_players
        k = min(self.k, n)
        budget = int(budget) if n > 1 else 2
        state, empty, intact = begin_run(runner, state, budget)
        out_shape = tuple(empty.shape)
        shape = (n, *out_shape)
        memory = memory_plan(self, n, math.prod(out_shape), int(max_memory or 2**62),
                             checkpoints=on_block is not None, natural_block=self.permutations_per_round)
        arms = state.extra
        if "count" not in arms:
            state.accumulator = (
                DiskMoments.create(scratch_folder(scratch_dir), shape, chunk_bytes=memory.chunk_bytes, row_counts=True)
                if memory.on_disk else MomentAccumulator.with_row_counts(shape, runner.device)
            )
            arms.update(
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
                self._merge_round(runner, state, [(0, np.zeros(1, dtype=np.int64), (intact - empty).unsqueeze(0))],
                                  np.zeros((1, 1)), np.zeros(1, dtype=np.int64), shape, False)
                arms["count"][0] = 1
                arms["active"][:], arms["in_top"][:] = False, True
        elif "sums" in arms:  # a checkpoint of the version that kept sums of marginals and of their squares
            c = arms["count"].to(runner.device, torch.float64).view(-1, *([1] * len(out_shape)))
            mean = arms.pop("sums").to(runner.device, torch.float64) / c.clamp(min=1)
            m2 = (arms.pop("squares").to(runner.device, torch.float64) - c * mean**2).clamp(min=0)
            state.accumulator = MomentAccumulator(int(arms["rounds"]), mean, m2, arms["count"].cpu().to(torch.int64).clone())
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
        # join orders merged (and checkpointed) together, and positions or units per game call
        step, chunk = (memory.block, n) if memory.mode == "blocks" else (1, memory.chunk)
        while active.any() and n > 1:
            # a whole chain (all marginals) is cheaper while most units are unresolved
            chain = 2 * int(active.sum()) >= n - 1
            units = np.arange(n) if chain else np.nonzero(active)[0]
            pending = arms.get("round")  # a round that a checkpoint or a cancel left half done
            if pending is None:
                per_perm = n - 1 if chain else 2 * len(units)
                m = min(self.permutations_per_round, (budget - runner.n_evaluations) // max(1, per_perm))
                if m < 1:
                    break
                done, scalar = 0, np.zeros((m, len(units)))
            else:
                m, done = int(pending["m"]), int(pending["done"])
                scalar = torch.as_tensor(pending["scalar"]).cpu().numpy().astype(np.float64).copy()
            perms = draw_permutations(seed, range(next_perm, next_perm + m), n)
            while done < m:
                runner.check_cancel()
                block = perms[done : done + step]
                pieces = self._pieces(runner, block, units, chain, empty, intact, chunk)
                self._merge_round(runner, state, pieces, scalar[done : done + len(block)], units, shape,
                                  split=chunk < len(units))
                done += len(block)
                if done < m:  # the state is whole after every step: a checkpoint, and a cancel, may come here
                    arms["round"] = {"m": m, "done": done, "scalar": torch.from_numpy(scalar.copy())}
                    state.n_evaluations = runner.n_evaluations
                    if on_block is not None:
                        on_block(state)
            arms.pop("round", None)
            next_perm += m
            rounds += 1
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
                count=torch.from_numpy(count.copy()), s_sum=torch.from_numpy(s_sum.copy()),
                s_sq=torch.from_numpy(s_sq.copy()), lo=lo, hi=hi, rounds=rounds,
                active=torch.from_numpy(active.copy()), in_top=torch.from_numpy(in_top.copy()),
                out_top=torch.from_numpy(out_top.copy()), lcb=torch.from_numpy(lcb.copy()), ucb=torch.from_numpy(ucb.copy()),
            )
            state.next_unit = next_perm
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
        elapsed = time.perf_counter() - started
        acc = state.accumulator
        if isinstance(acc, DiskMoments):
            result = disk_result(self, state, seed=seed, elapsed_s=elapsed, max_bytes=memory.chunk_bytes)
            result.n_samples = next_perm
        else:
            result = state.to_result(acc.mean.clone(), acc.stderr(), method=self.name, seed=seed, elapsed_s=elapsed,
                                     n_samples=next_perm)
        if max_memory is not None or result.on_disk:
            result.metadata["memory"] = memory.describe()
        mean = s_sum / np.maximum(count, 1)
        ranked = np.argsort(-mean, kind="stable")
        top = sorted(int(i) for i in ranked[:k])
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


def _row_summaries(marginals: torch.Tensor, summary: Any) -> np.ndarray:
    """Scalar summaries ``(rows,)`` of marginals ``(rows, *out)`` (:func:`summarise`), the same bits
    however rows are grouped: torch splits a lone output's reduction across threads (which changes
    its rounding) but reduces each of several rows serially, so a lone row goes with a copy of itself."""
    if len(marginals) == 1:
        return summarise(torch.cat([marginals, marginals]), summary)[:1].cpu().numpy()
    return summarise(marginals, summary).cpu().numpy()
