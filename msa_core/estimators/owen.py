"""Stratified Owen sampling with antithetic coalitions and an efficiency projection.

The Shapley value is an integral over the inclusion probability ``q`` of the multilinear extension
(Owen 1972; as an estimator: Okhrati & Lipani 2021, "A multilinear sampling algorithm to estimate
Shapley values", ICPR):

    phi_i = integral_0^1 E_{S ~ Bernoulli(q) on N minus i} [ v(S + i) - v(S) ] dq.

One *sample unit* here covers ``[0, 1]`` with ``n_strata`` equal strata of ``q`` (one uniform draw
per stratum: stratified sampling of the integral, unbiased). The strata come in antithetic pairs: the
base coalition ``B`` drawn at ``q`` in stratum ``k`` is paired with its complement, which is
Bernoulli(1 - q) and falls in the mirrored stratum. From one base ``B`` every unit gets a marginal
with ``n + 1`` evaluations (``v(B)`` and ``v(B xor {i})`` for each ``i``): units in ``B`` see
``v(B) - v(B - i)``, the others ``v(B + i) - v(B)``.

Why it beats plain permutation sampling on neural-network games: a unit's marginal contribution
depends mostly on how many units are intact. Permutation sampling puts each unit at a uniformly random
position, so that between-size variance stays in the estimate; here every unit is sampled once per
size stratum per sample unit, which removes most of it.

Single Owen samples do not sum to ``v(N) - v(empty)``, so the final estimate is projected onto the
efficiency hyperplane, distributing the gap in proportion to each estimate's variance (the
minimum-variance linear correction; Williamson & Feng 2020, Covert & Lee 2021). A unit whose marginals
are always zero (a null player) has zero variance and keeps exactly 0; the gap shrinks as 1/sqrt(m),
so the estimator is consistent, with an O(1/m) bias from the estimated variances. Because the weights
depend on the samples, the projection is not linear in the game (unlike the other samplers).

Under a tight ``max_memory`` a unit is streamed (:meth:`OwenEstimator.stream_unit`): the strata's
base values once, then ``chunk`` players' flipped coalitions in every stratum at a time; with
accumulators on disk the projection runs range by range (:func:`project_efficiency`).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from .base import GameRunner, SamplingEstimator

__all__ = ["OwenEstimator", "project_efficiency"]


def project_efficiency(values: Any, stderr: Any, total: torch.Tensor, ranges: Iterable[tuple[int, int]]) -> None:
    """Project estimates onto ``values.sum(0) == total`` in place, weighting by variance (module docstring).

    ``values`` and ``stderr`` are ``(n, *output)`` float64 tensors or on-disk
    :class:`~msa_core.ondisk.ChunkedArray` s, read and written by the row ranges ``ranges`` (which
    cover ``0..n`` in order: two passes, the first for the sums over players, so memory is that of
    one range); ``total`` is ``v(N) - v(empty)`` ``(*output)``. ``stderr`` becomes that of the
    projected estimate with a diagonal covariance: ``sqrt(var_i - var_i^2 / sum_j var_j)``.
    """
    ranges = list(ranges)

    def write(array: Any, start: int, stop: int, data: torch.Tensor) -> None:
        if isinstance(array, torch.Tensor):
            array[start:stop] = data
        else:
            array.write_rows(np.arange(start, stop), data)

    n = ranges[-1][1]
    value_sum = variance_sum = magnitude_sum = None
    for start, stop in ranges:
        rows, variance = values[start:stop], stderr[start:stop] ** 2
        sums = rows.sum(0), variance.sum(0), rows.abs().sum(0)
        if value_sum is None:
            value_sum, variance_sum, magnitude_sum = sums
        else:
            value_sum, variance_sum, magnitude_sum = value_sum + sums[0], variance_sum + sums[1], magnitude_sum + sums[2]
    gap = total.to(value_sum.device, value_sum.dtype) - value_sum
    for start, stop in ranges:
        rows, variance = values[start:stop], stderr[start:stop] ** 2
        # without any variance the gap is rounding only: spread it over the non-null units
        fallback = torch.where(magnitude_sum > 0, rows.abs() / magnitude_sum.clamp_min(1e-300),
                               torch.full_like(variance, 1.0 / n))
        weights = torch.where(variance_sum > 0, variance / variance_sum.clamp_min(1e-300), fallback)
        projected = variance - variance**2 / variance_sum.clamp_min(1e-300)
        write(values, start, stop, rows + weights * gap)
        write(stderr, start, stop, torch.sqrt(projected.clamp_min(0)))


class OwenEstimator(SamplingEstimator):
    """Stratified, antithetic Owen sampling (see module docstring).

    Args:
        n_strata: strata of ``q`` per sample unit (even; default 8). A unit costs
            ``n_strata * (n + 1)`` evaluations; a budget buys ``(budget - 2) // (n_strata * (n + 1))``
            units.
    """

    name = "owen"
    min_units = 2
    streams = True

    def __init__(self, n_strata: int = 8) -> None:
        if n_strata < 2 or n_strata % 2:
            raise ValueError(f"n_strata must be an even integer >= 2; got {n_strata}")
        self.n_strata = n_strata

    def evaluations_per_unit(self, n_players: int) -> int:
        return self.n_strata * (n_players + 1)

    def bases(self, seed: int, unit: int, n_players: int) -> np.ndarray:
        """The ``n_strata`` base coalitions of one unit: bool ``(n_strata, n_players)``."""
        rng = np.random.default_rng([seed, unit])
        half = self.n_strata // 2
        q = (np.arange(half) + rng.random(half)) / self.n_strata
        drawn = rng.random((half, n_players)) < q[:, None]
        return np.concatenate([drawn, ~drawn])

    def unit_samples(self, runner: GameRunner, n_players, seed, units, empty, intact):
        n = n_players
        bases = torch.from_numpy(np.stack([self.bases(seed, u, n) for u in units]))  # (k, Q, n)
        k, q = bases.shape[:2]
        flips = bases.unsqueeze(2) ^ torch.eye(n, dtype=torch.bool)  # (k, Q, n, n): base with unit i flipped
        coalitions = torch.cat([bases.unsqueeze(2), flips], dim=2).reshape(k * q * (n + 1), n)
        values = runner(coalitions).reshape(k, q, n + 1, *empty.shape)
        base_values, flipped_values = values[:, :, :1], values[:, :, 1:]
        sign = torch.where(bases, 1.0, -1.0).to(values.dtype).to(values.device)
        sign = sign.view(k, q, n, *([1] * empty.ndim))
        marginals = (base_values - flipped_values) * sign  # in B: v(B) - v(B-i); out: v(B+i) - v(B)
        return marginals.mean(1)  # (k, n, *out): one stratified estimate per sample unit

    def stream_unit(self, runner: GameRunner, n_players, seed, unit, empty, intact, chunk):
        """Unit ``unit`` of :meth:`unit_samples`, ``chunk`` players at a time: the ``n_strata`` base
        values first, then for players ``i0..i1-1`` their flipped coalitions in every stratum
        (``n_strata * chunk`` evaluations), averaged over strata. Same coalitions, same arithmetic."""
        n = n_players
        bases = torch.from_numpy(self.bases(seed, unit, n))  # (Q, n)
        q = bases.shape[0]
        base_values = runner(bases).view(q, 1, *empty.shape)
        sign = torch.where(bases, 1.0, -1.0).to(torch.float64).to(base_values.device)
        for i0 in range(0, n, max(1, int(chunk))):
            players = torch.arange(i0, min(n, i0 + max(1, int(chunk))))
            flips = bases.unsqueeze(1).repeat(1, len(players), 1)  # (Q, p, n): base with player i flipped
            flips[:, torch.arange(len(players)), players] ^= True
            flipped_values = runner(flips.reshape(q * len(players), n)).view(q, len(players), *empty.shape)
            marginals = (base_values - flipped_values) * sign[:, players].view(q, len(players), *([1] * empty.ndim))
            yield players, marginals.mean(0)

    def result_from_state(self, state, *, seed, elapsed_s):
        result = SamplingEstimator.result_from_state(self, state, seed=seed, elapsed_s=elapsed_s)
        n = result.values.shape[0]
        project_efficiency(result.values, result.stderr, state.intact - state.empty, [(0, n)])
        return result

    def finish_on_disk(self, mean, stderr, state, *, max_bytes):
        project_efficiency(mean, stderr, state.intact - state.empty, mean.ranges(max_bytes))
