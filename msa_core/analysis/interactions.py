"""Pairwise interactions of units (two-dimensional MSA) from one set of shared permutations.

Keinan et al. (2004), as msapy's ``interaction_2d`` computes it::

    gamma_ij = phi_{ij} - phi_i(N - j) - phi_j(N - i)

``phi_{ij}`` is the Shapley value of the merged player ``{i, j}`` (the two always lesioned together)
and ``phi_i(N - j)`` is ``i``'s Shapley value in the game where ``j`` is lesioned for good. A pure
synergy (``v = c [i, j both intact]``) gives ``gamma = c``, a redundancy a negative ``gamma``, and
independent units 0. msapy runs three permutation analyses per pair; here one run gives every pair
of a chosen set of ``u`` units.

Why it is unbiased: delete ``j`` from a uniformly random join order ``pi`` of the ``n`` players and
what remains is a uniformly random order of the other ``n - 1``. With ``B`` the players before ``i``
in that order, ``v(B + {i, j}) - v(B)`` samples ``phi_{ij}`` (``i`` stands for the merged player) and
``v(B + {i}) - v(B)`` samples ``phi_i(N - j)``; deleting ``i`` instead gives the samples at ``j``'s
place. We average the two deletions, which also makes the estimate symmetric. (Merging at the place
of *whichever comes first* alone would be biased: the earlier of two positions is not uniform.)

Sharing: of the six coalitions a pair needs per order, three are prefixes of the order's chain,
which is evaluated once for all pairs (and also gives every unit's ordinary Shapley value); so each
pair costs three extra evaluations per order instead of three whole permutation runs. The three
terms of a sample come from the same order, so their noise largely cancels in ``gamma``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..accumulate import MomentAccumulator
from ..estimators.base import GameRunner
from ..estimators.permutation import chain_marginals, chain_values, draw_permutations, join_positions
from ._common import _as_tensor_game, n_players_of

__all__ = ["InteractionResult", "pairwise_interactions"]


@dataclass
class InteractionResult:
    """Pairwise interactions of a set of units.

    Attributes:
        units: int64 ``(u,)``: the chosen units (player indices).
        gamma: float64 ``(u, u, *output_shape)``: ``gamma[a, b]`` for units ``units[a]``,
            ``units[b]``; symmetric, zero on the diagonal.
        stderr: float64, same shape: standard error over permutations.
        phi: float64 ``(u, *output_shape)``: the units' Shapley values from the same permutations.
        pair_values: float64 ``(u, u, *output_shape)``: ``phi_{ij}`` of the merged players
            (``gamma[a, b] = pair_values[a, b] - phi_a(N - b) - phi_b(N - a)``).
        n_permutations: permutations used.
        n_evaluations: game evaluations spent (endpoints included).
        unit_labels: labels of the chosen units.
    """

    units: np.ndarray
    gamma: np.ndarray
    stderr: np.ndarray
    phi: np.ndarray
    pair_values: np.ndarray
    n_permutations: int
    n_evaluations: int
    unit_labels: list[str] = field(default_factory=list)

    def to_frame(self, reduce: str = "mean") -> pd.DataFrame:
        """One row per pair: ``unit_i``, ``unit_j``, ``gamma``, ``stderr`` (vector games: mean over outputs)."""
        rows = []
        u = len(self.units)
        for a, b in combinations(range(u), 2):
            g = np.asarray(self.gamma[a, b]).reshape(-1)
            s = np.asarray(self.stderr[a, b]).reshape(-1)
            rows.append(
                {
                    "unit_i": self.unit_labels[a],
                    "unit_j": self.unit_labels[b],
                    "gamma": float(g.mean() if reduce == "mean" else g.sum()),
                    # the stderr of a mean of correlated outputs is at most the mean stderr
                    "stderr": float(s.mean() if reduce == "mean" else s.sum()),
                }
            )
        return pd.DataFrame(rows)


def pairwise_interactions(
    game: Callable,
    units: Sequence[int],
    *,
    n_players: int | None = None,
    n_permutations: int = 100,
    seed: int = 0,
    batch_size: int | None = None,
    permutations_per_block: int = 32,
    unit_labels: Sequence[str] | None = None,
) -> InteractionResult:
    """Interactions ``gamma_ij`` of every pair of ``units`` (see the module docstring), shared samples.

    Args:
        game: a game (bool ``(batch, n)`` -> ``(batch, *output_shape)``).
        units: the chosen player indices (``u >= 2`` distinct).
        n_players: number of players (default ``game.n_players``).
        n_permutations: join orders to sample; permutation ``p`` is drawn from ``(seed, p)`` exactly as
            ``shapley_modes(method="permutation")`` draws it, so ``phi`` matches that run.
        batch_size: rows per game call (None: one call per block).
        permutations_per_block: permutations evaluated per coalition matrix (bounds memory).
        unit_labels: labels of all players (default ``game.unit_labels`` or the indices).

    Cost: ``2 + n_permutations * (n - 1 + 3 * u * (u - 1) / 2)`` evaluations.
    """
    n = n_players_of(game, n_players)
    chosen = np.asarray(units, dtype=np.int64).reshape(-1)
    if len(chosen) < 2 or len(np.unique(chosen)) != len(chosen):
        raise ValueError("units must name at least two distinct players")
    if chosen.min() < 0 or chosen.max() >= n:
        raise ValueError(f"units must be in range({n})")
    if n_permutations < 1:
        raise ValueError("n_permutations must be positive")
    labels_all = list(unit_labels) if unit_labels is not None else list(getattr(game, "unit_labels", None) or range(n))
    pairs = list(combinations(range(len(chosen)), 2))
    pair_a = torch.as_tensor([chosen[a] for a, _ in pairs])
    pair_b = torch.as_tensor([chosen[b] for _, b in pairs])
    n_pairs = len(pairs)

    runner = GameRunner(_as_tensor_game(game), n, batch_size=batch_size)
    empty, intact = runner.endpoints()
    out_shape = tuple(empty.shape)

    acc_gamma = MomentAccumulator()
    acc_phi = MomentAccumulator()
    acc_pair = MomentAccumulator()
    for start in range(0, n_permutations, permutations_per_block):
        stop = min(n_permutations, start + permutations_per_block)
        perms = draw_permutations(seed, range(start, stop), n)
        m = perms.shape[0]
        pos = join_positions(perms)
        # per pair, with f the one of (i, j) that comes first in the order and s the other:
        #   B_f = players before f (a chain prefix), B_s = players before s, minus f.
        # Chain prefixes give v(B_f), v(B_f + f) and v(B_s + f + s); three coalitions are new:
        #   new1 = B_f + {f, s}, new2 = B_s, new3 = B_s + {s}.
        i_first = pos[:, pair_a] < pos[:, pair_b]  # (m, P)
        first = torch.where(i_first, pair_a.view(1, -1), pair_b.view(1, -1))
        second = torch.where(i_first, pair_b.view(1, -1), pair_a.view(1, -1))
        p_first = pos.gather(1, first)
        p_second = pos.gather(1, second)
        rows = torch.arange(m).view(m, 1).expand(m, n_pairs)
        cols = torch.arange(n_pairs).view(1, n_pairs).expand(m, n_pairs)
        new1 = pos.unsqueeze(1) < p_first.unsqueeze(2)  # (m, P, n)
        new1[rows, cols, first] = True
        new1[rows, cols, second] = True
        new2 = pos.unsqueeze(1) < p_second.unsqueeze(2)
        new2[rows, cols, first] = False
        new3 = new2.clone()
        new3[rows, cols, second] = True
        with torch.no_grad():  # the chain through the shared walker; the pair coalitions in one call
            chain = chain_values(runner, perms, empty, intact)  # (m, n + 1, *out)
            new_values = runner(torch.cat([x.reshape(m * n_pairs, n) for x in (new1, new2, new3)]))
        marginals = chain_marginals(chain, perms)  # marginals[p, i]: unit i's gain in permutation p

        new_values = new_values.reshape(3, m, n_pairs, *out_shape)
        rows = torch.arange(m).view(m, 1)
        v_bf, v_bf_f = chain[rows, p_first], chain[rows, p_first + 1]
        v_bs_fs = chain[rows, p_second + 1]
        v_bf_fs, v_bs, v_bs_s = new_values[0], new_values[1], new_values[2]
        # merging at f's place (order with s deleted) and at s's place (f deleted), averaged: the two
        # unbiased "delete the partner" samples, whichever of i and j came first
        pair_sample = ((v_bf_fs - v_bf) + (v_bs_fs - v_bs)) / 2
        # phi_i(N - j) + phi_j(N - i): each unit's marginal in the order with its partner deleted
        alone = (v_bf_f - v_bf) + (v_bs_s - v_bs)
        gamma_sample = pair_sample - alone
        acc_gamma.add(gamma_sample)
        acc_pair.add(pair_sample)
        acc_phi.add(marginals[:, torch.as_tensor(chosen)])

    u = len(chosen)
    gamma = np.zeros((u, u, *out_shape))
    stderr = np.zeros((u, u, *out_shape))
    pair_values = np.zeros((u, u, *out_shape))
    g_mean, g_se, p_mean = acc_gamma.mean.numpy(), acc_gamma.stderr().numpy(), acc_pair.mean.numpy()
    for q, (a, b) in enumerate(pairs):
        for x, y in ((a, b), (b, a)):
            gamma[x, y], stderr[x, y], pair_values[x, y] = g_mean[q], g_se[q], p_mean[q]
    return InteractionResult(
        units=chosen,
        gamma=gamma,
        stderr=stderr,
        phi=acc_phi.mean.numpy(),
        pair_values=pair_values,
        n_permutations=n_permutations,
        n_evaluations=runner.n_evaluations,
        unit_labels=[str(labels_all[i]) for i in chosen],
    )
