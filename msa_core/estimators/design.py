"""Paired, stratified coalition designs for the regression estimators (kernel, leverage, kadd, ...).

A design spends a budget of game evaluations on *pairs* ``(S, N - S)`` (the pairing trick of Covert &
Lee 2021: the two halves of a pair have negatively correlated errors). Pairs are stratified by the
smaller size ``s = min(|S|, n - |S|)`` (``s = 1 .. n // 2``); stratum ``s`` holds ``binom(n, s)``
pairs (half that for ``s = n / 2``, where ``S`` and its complement have the same size).

Allocation: the pairs are shared among strata in proportion to a *size weight* per stratum (the
Shapley kernel's mass for ``kernel``, uniform over sizes for ``leverage``: Musco & Witter 2025 show
that the leverage scores of the Shapley regression are equal within a size and uniform over sizes).
A stratum whose share would reach its whole population is enumerated (a *census*: the border trick
of Fumagalli et al. 2023, applied until no stratum overflows), and the rest is shared again. Inside a
sampled stratum the pairs are drawn **without replacement**, uniformly.

Weights: a coalition ``S`` of size ``k`` stands for the ``binom(n, k)`` coalitions of its size, so
Horvitz-Thompson weights divide by the number of drawn coalitions of that size
(:attr:`PairedDesign.per_size_draws`). The sampled pairs are dealt round-robin, in their random draw
order, into ``n_groups`` groups (census pairs belong to no group): the groups are the independent
replicates behind the jackknife and cross-fitting of :mod:`~msa_core.estimators.regression`.

Everything is a function of ``(n, budget, size weights, seed)`` only: the same design on any batch
size, after a resume, on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

__all__ = ["DesignOutline", "PairedDesign", "allocate_pairs", "kernel_size_weights", "uniform_size_weights"]

_ENUMERATE_FACTOR = 4  # a stratum at most this many times larger than its draw is listed, then subsampled


def strata_sizes(n: int, paired: bool = True) -> np.ndarray:
    """The strata: smaller sizes ``1 .. n // 2`` of pairs, or all sizes ``1 .. n - 1`` unpaired."""
    return np.arange(1, n // 2 + 1) if paired else np.arange(1, n)


def kernel_size_weights(n: int, paired: bool = True) -> np.ndarray:
    """Shapley-kernel mass of each stratum (a pair stratum holds sizes ``s`` and ``n - s``)."""
    sizes = strata_sizes(n, paired)
    mass = (n - 1) / (sizes * (n - sizes))
    return np.where(2 * sizes == n, mass, 2 * mass) if paired else mass


def uniform_size_weights(n: int, paired: bool = True) -> np.ndarray:
    """Uniform over coalition sizes ``1 .. n - 1`` (leverage scores), per stratum."""
    sizes = strata_sizes(n, paired)
    return np.where(2 * sizes == n, 1.0, 2.0) if paired else np.ones(len(sizes))


def pair_population(n: int, paired: bool = True) -> np.ndarray:
    """Units (pairs, or coalitions unpaired) in each stratum: int64, capped at ``2^62``."""
    counts = [math.comb(n, s) // (2 if paired and 2 * s == n else 1) for s in strata_sizes(n, paired)]
    return np.asarray([min(c, 2**62) for c in counts], dtype=np.int64)


def allocate_pairs(n: int, n_pairs: int, size_weights: np.ndarray, paired: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(draws, census)`` per stratum: pairs to draw (int64) and whether the stratum is enumerated.

    Census strata take their whole population while the proportional share of the remaining pairs
    would cover it; the others share what is left by largest remainders.
    """
    population = pair_population(n, paired)
    weights = np.asarray(size_weights, dtype=np.float64).copy()
    census = np.zeros(len(population), dtype=bool)
    left = int(n_pairs)
    while True:
        open_ = ~census & (weights > 0)
        if not open_.any():
            break
        share = left * weights / weights[open_].sum()
        overflow = open_ & (share >= population)
        if not overflow.any():
            break
        census |= overflow
        left -= int(population[overflow].sum())
    draws = np.where(census, population, 0).astype(np.int64)
    open_ = ~census & (weights > 0)
    if open_.any() and left > 0:
        share = left * weights / weights[open_].sum()
        base = np.where(open_, np.floor(share), 0).astype(np.int64)
        remainder = np.where(open_, share - base, -1.0)
        extra = left - int(base.sum())
        order = np.argsort(-remainder, kind="stable")[:extra]
        base[order] += 1
        draws += np.minimum(base, population)
    return draws, census


def _stratum_bases(n: int, s: int, draws: int, population: int, rng: np.random.Generator, paired: bool) -> np.ndarray:
    """``draws`` distinct pairs of stratum ``s`` as bool ``(draws, n)`` (one half of each pair), in
    random order. For ``s = n / 2`` the half holding player 0 stands for the pair."""
    middle = paired and 2 * s == n
    if draws == 0:
        return np.zeros((0, n), dtype=bool)
    if population <= _ENUMERATE_FACTOR * draws:  # small stratum: list it, then subsample
        if middle:
            rows = [(0, *rest) for rest in combinations(range(1, n), s - 1)]
        else:
            rows = list(combinations(range(n), s))
        listed = np.zeros((len(rows), n), dtype=bool)
        listed[np.repeat(np.arange(len(rows)), s), np.asarray(rows).reshape(-1)] = True
        return listed[rng.permutation(len(rows))[:draws]]
    found: list[np.ndarray] = []
    seen: set[bytes] = set()
    while len(seen) < draws:  # rejection: the stratum is at least 4x the draw, so few repeats
        keys = rng.random((2 * (draws - len(seen)) + 8, n))
        candidates = np.zeros_like(keys, dtype=bool)
        np.put_along_axis(candidates, np.argsort(keys, axis=1)[:, :s], True, axis=1)
        if middle:
            candidates = np.where(candidates[:, :1], candidates, ~candidates)
        for row, code in zip(candidates, np.packbits(candidates, axis=1)):
            key = code.tobytes()
            if key not in seen and len(seen) < draws:
                seen.add(key)
                found.append(row)
    return np.stack(found)


@dataclass(frozen=True)
class DesignOutline:
    """A :class:`PairedDesign` before its coalitions are drawn (:meth:`PairedDesign.outline`): what the
    memory plans read of it.

    Attributes:
        n: players; n_pairs: units (pairs, or coalitions unpaired); n_groups: replicate groups used
            (0 when everything is a census); paired: whether units are pairs.
        draws, census, population: per stratum (see :func:`allocate_pairs`, :func:`pair_population`).
    """

    n: int
    n_pairs: int
    n_groups: int
    paired: bool
    draws: np.ndarray
    census: np.ndarray
    population: np.ndarray


@dataclass
class PairedDesign:
    """The pairs a run evaluates, in order, with their weights and groups.

    Attributes:
        n: players.
        bases: bool ``(P, n)``: one half ``S`` of each pair (the other is ``~S``).
        groups: int64 ``(P,)``: the replicate group of each pair; -1 for census pairs.
        n_groups: number of replicate groups actually used (0 when everything is a census).
        per_size_draws: float64 ``(n + 1,)``: coalitions of each size in the design (the
            Horvitz-Thompson denominator; census sizes have ``binom(n, k)``).
        draws, census: per stratum ``s = 1 .. n // 2`` (see :func:`allocate_pairs`).
    """

    n: int
    bases: np.ndarray
    groups: np.ndarray
    n_groups: int
    per_size_draws: np.ndarray
    draws: np.ndarray
    census: np.ndarray
    paired: bool = True

    @staticmethod
    def outline(n: int, budget: int, size_weights: np.ndarray, n_groups: int, paired: bool = True) -> "DesignOutline":
        """What :meth:`build` makes of these arguments without drawing a coalition: the units, the
        per-stratum allocation and the replicate groups actually used (see :class:`DesignOutline`)."""
        if n < 2:
            raise ValueError("a coalition design needs at least two players")
        population = pair_population(n, paired)
        total = int(population.sum()) if n <= 62 else 2**62
        n_pairs = min(total, max(0, (int(budget) - 2) // (2 if paired else 1)))
        draws, census = allocate_pairs(n, n_pairs, size_weights, paired)
        sampled_total = int(draws[~census].sum())
        used_groups = min(int(n_groups), sampled_total) if sampled_total >= 2 else 0
        return DesignOutline(n, int(draws.sum()), used_groups, paired, draws, census, population)

    @staticmethod
    def build(n: int, budget: int, size_weights: np.ndarray, seed: int, n_groups: int, paired: bool = True) -> "PairedDesign":
        """The design of ``(budget - 2) // 2`` pairs (all pairs if fewer exist); unpaired, of
        ``budget - 2`` single coalitions."""
        outline = PairedDesign.outline(n, budget, size_weights, n_groups, paired)
        draws, census, population, used_groups = outline.draws, outline.census, outline.population, outline.n_groups
        blocks, group_blocks = [], []
        dealt = 0  # sampled pairs dealt into groups so far (round-robin over all strata)
        sizes = strata_sizes(n, paired)
        for index, s in enumerate(sizes.tolist()):
            rng = np.random.default_rng([int(seed), 0x5A17 if paired else 0x5A18, s])
            rows = _stratum_bases(n, s, int(draws[index]), int(population[index]), rng, paired)
            blocks.append(rows)
            if census[index] or used_groups == 0:
                group_blocks.append(np.full(len(rows), -1, dtype=np.int64))
            else:
                group_blocks.append((dealt + np.arange(len(rows))) % used_groups)
                dealt += len(rows)
        per_size = np.zeros(n + 1)
        for index, s in enumerate(sizes.tolist()):
            if not paired:
                per_size[s] = draws[index]
                continue
            per_size[s] = draws[index] * (2 if 2 * s == n else 1)
            per_size[n - s] = per_size[s]
        return PairedDesign(
            n=n,
            bases=np.concatenate(blocks) if blocks else np.zeros((0, n), dtype=bool),
            groups=np.concatenate(group_blocks) if group_blocks else np.zeros(0, dtype=np.int64),
            n_groups=used_groups,
            per_size_draws=per_size,
            draws=draws,
            census=census,
            paired=paired,
        )

    @property
    def n_pairs(self) -> int:
        """Units in the design: pairs (two evaluations each), or coalitions unpaired."""
        return int(self.bases.shape[0])

    def coalitions(self, pairs: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Coalitions of ``pairs``: bool ``(2k, n)`` (halves, then complements) and their groups ``(2k,)``
        (unpaired: the ``k`` coalitions themselves)."""
        halves = torch.from_numpy(self.bases[pairs.start : pairs.stop])
        groups = torch.from_numpy(self.groups[pairs.start : pairs.stop])
        if not self.paired:
            return halves, groups
        return torch.cat([halves, ~halves]), torch.cat([groups, groups])
