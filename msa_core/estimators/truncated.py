"""Truncated permutation sampling (Neuron Shapley's TMC, Ghorbani & Zou 2020).

Each sample is a join order ``pi`` drawn exactly as ``method="permutation"`` draws it. The chain is
walked from the *intact* model downwards, lesioning ``pi[n-1]``, ``pi[n-2]``, ... (the lesion order
of Neuron Shapley). Once the scalar summary of the game is within ``tolerance`` of its floor (by
default ``v(empty)``, or a given chance level), the walk stops: the units not yet lesioned get a
zero marginal, and the last lesioned unit absorbs the remainder (its marginal is measured down to
``v(empty)`` itself), so every sample still sums to ``v(N) - v(empty)`` (efficiency holds exactly).

The saving: for networks where a few lesions already reach chance, most of a chain is skipped. The
price: a small bias, bounded by the tolerance, on units whose late contributions are cut.

For a tensor game the stop rule uses a scalar summary (by default the mean over outputs), while the
marginals themselves are full modes. Evaluation is batched: all active chains of a block advance by
``chunk`` positions per game call. Under a tight ``max_memory`` one chain is streamed instead
(:meth:`TruncatedEstimator.stream_unit`: the same walk, the same stops, the same evaluations).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..bounded import chain_chunks
from .base import GameRunner, SamplingEstimator
from .permutation import chain_marginals, draw_permutations, prefix_coalitions

__all__ = ["TruncatedEstimator", "summarise"]


def summarise(values: torch.Tensor, summary: str | int | Callable | None) -> torch.Tensor:
    """Scalar summary per row: ``(batch, *output_shape)`` -> ``(batch,)`` float64.

    ``None``/"mean": mean over outputs; "sum": sum; an int: that flat output; a callable maps the
    tensor to ``(batch,)``.
    """
    if callable(summary):
        return torch.as_tensor(summary(values), dtype=torch.float64).reshape(values.shape[0])
    flat = values.reshape(values.shape[0], -1).to(torch.float64)
    if summary is None or summary == "mean":
        return flat.mean(1)
    if summary == "sum":
        return flat.sum(1)
    if isinstance(summary, int) and not isinstance(summary, bool):
        return flat[:, summary]
    raise ValueError(f"summary must be None, 'mean', 'sum', an output index or a callable; got {summary!r}")


class TruncatedEstimator(SamplingEstimator):
    """Truncated Monte Carlo permutation sampling with efficiency kept exact.

    Args:
        tolerance: stop a chain once ``|s(v(S)) - floor| <= tolerance * |s(v(N)) - floor|`` (relative
            to the full range; 0 stops only when the floor is met exactly).
        floor: the level to stop at (e.g. chance accuracy); None uses ``s(v(empty))``.
        summary: scalar summary of a tensor game for the stop rule (see :func:`summarise`).
        chunk: chain positions evaluated per step of the walk (None: about ``n / 16``); larger chunks
            mean fewer game calls but more evaluations past the stopping point.
    """

    name = "truncated"
    adaptive = True
    streams = True

    def __init__(
        self,
        tolerance: float = 0.05,
        floor: float | None = None,
        summary: str | int | Callable | None = None,
        chunk: int | None = None,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be non-negative; got {tolerance}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be a positive integer; got {chunk}")
        self.tolerance = float(tolerance)
        self.floor = floor
        self.summary = summary
        self.chunk = chunk
        self.truncated_steps = 0  # chain positions skipped so far (for metadata)
        self.total_steps = 0

    def evaluations_per_unit(self, n_players: int) -> int:
        return max(0, n_players - 1)  # an upper bound: truncation spends fewer

    def _stop_rule(self, empty: torch.Tensor, intact: torch.Tensor) -> tuple[float, float, float]:
        """``(s(v(N)), floor, threshold)``: a chain stops at a value ``v`` with ``|s(v) - floor| <= threshold``."""
        s_intact = float(summarise(intact.unsqueeze(0), self.summary)[0])
        floor = float(summarise(empty.unsqueeze(0), self.summary)[0]) if self.floor is None else float(self.floor)
        return s_intact, floor, self.tolerance * abs(s_intact - floor)

    def _walk_chunk(self, n_players: int) -> int:
        return self.chunk or max(1, math.ceil(n_players / 16))

    def unit_samples(self, runner: GameRunner, n_players, seed, units, empty, intact):
        n = n_players
        m = len(units)
        perms = draw_permutations(seed, units, n)
        out_shape = tuple(empty.shape)
        values = torch.empty((m, n + 1, *out_shape), dtype=torch.float64, device=runner.device)
        values[:, 0] = empty
        values[:, n] = intact
        s_intact, floor, threshold = self._stop_rule(empty, intact)
        stop_at = torch.zeros(m, dtype=torch.int64)  # j*: chain values below j* are set to v(empty)
        current = torch.full((m,), n, dtype=torch.int64)  # lowest chain index evaluated so far
        active = torch.ones(m, dtype=torch.bool)
        if n > 1 and abs(s_intact - floor) <= threshold:
            active[:] = False  # the intact model is already at the floor: nothing to walk
            stop_at[:] = n
        chunk = self._walk_chunk(n)
        while bool(active.any()):
            runner.check_cancel()
            rows = active.nonzero().flatten()
            top = current[rows[0]].item()  # all active chains are at the same depth
            js = torch.arange(top - 1, max(0, top - chunk) - 1, -1)  # descending chain indices >= 1
            js = js[js >= 1]
            if len(js) == 0:
                active[rows] = False
                continue
            coalitions = prefix_coalitions(perms[rows], js)  # (a, c, n): prefix of length j
            evaluated = runner(coalitions.reshape(-1, n)).reshape(len(rows), len(js), *out_shape)
            values[rows.unsqueeze(1), js.unsqueeze(0)] = evaluated
            near = (summarise(evaluated.reshape(-1, *out_shape), self.summary).reshape(len(rows), len(js)) - floor).abs() <= threshold
            hit = near.any(1)
            first = near.to(torch.int8).argmax(1)  # first (highest) chain index near the floor
            stop_at[rows[hit]] = js[first[hit]]
            active[rows[hit]] = False
            current[rows] = int(js[-1])
            active &= current > 1
        # truncate: the chain below j* is v(empty), so pi[j*-1]... get 0 and pi[j*] absorbs the rest
        positions = torch.arange(n + 1).view(1, n + 1)
        cut = (positions <= stop_at.view(m, 1)) & (positions < n)
        cut[:, 0] = True
        values = torch.where(cut.view(m, n + 1, *([1] * len(out_shape))), empty.expand_as(values), values)
        self.truncated_steps += int((stop_at.clamp(min=1) - 1).sum())
        self.total_steps += m * max(0, n - 1)
        return chain_marginals(values, perms)

    def stream_unit(self, runner, n_players, seed, unit, empty, intact, chunk):
        """One chain of :meth:`unit_samples`, walked from the intact model down ``chunk`` positions
        at a time (the join order reversed, prefixes as complements: :func:`~msa_core.bounded.chain_chunks`)
        within the same stretches of ``self.chunk`` positions, so it stops where the batched walk
        stops and spends the same evaluations."""
        n = n_players
        order = draw_permutations(seed, range(unit, unit + 1), n)[0]
        _, floor, threshold = self._stop_rule(empty, intact)
        seen = [-1]  # chain values checked so far (-1: the intact value, checked first)
        stop_length = [0]  # the chain length j* below which values are v(empty) (0: no cut)

        def stop(values: torch.Tensor) -> int | None:
            near = (summarise(values, self.summary) - floor).abs() <= threshold
            checked, seen[0] = seen[0], seen[0] + len(values)
            if not bool(near.any()):
                return None
            first = int(near.to(torch.int8).argmax())
            stop_length[0] = n if checked < 0 else n - (checked + 1 + first)
            return first

        walk = self._walk_chunk(n)
        yield from chain_chunks(runner, order.flip(0), empty, intact, min(chunk, walk), reverse=True, align=walk,
                                stop=stop if n > 1 else None)
        self.truncated_steps += max(stop_length[0], 1) - 1
        self.total_steps += max(0, n - 1)

    def estimate(self, runner: GameRunner, n_players: int, *, state: Any = None,
                 on_block: Callable[[Any], Any] | None = None, **options: Any):
        """:meth:`SamplingEstimator.estimate`, with ``metadata["truncation"]``: the tolerance, the floor and
        the fraction of chain steps the stop rule skipped, over every unit of the run. The counts
        travel in the checkpoint (``state.extra["truncation_steps"]``: skipped, total), so a resumed
        run reports the fraction of the uninterrupted one."""
        saved = state.extra.get("truncation_steps") if state is not None else None
        # a resumed state's counts; a fresh run (next_unit 0) starts from none, whatever ran before
        resumed = saved is not None and state.next_unit > 0
        self.truncated_steps, self.total_steps = (int(saved[0]), int(saved[1])) if resumed else (0, 0)

        def record(merged: Any) -> None:  # called after each merged block: the counts are the state's
            merged.extra["truncation_steps"] = torch.tensor([self.truncated_steps, self.total_steps])
            if on_block is not None:
                on_block(merged)

        result = super().estimate(runner, n_players, state=state, on_block=record if on_block is not None else None,
                                  **options)
        result.metadata["truncation"] = {
            "tolerance": self.tolerance,
            "floor": self.floor,
            "skipped_fraction": self.truncated_steps / self.total_steps if self.total_steps else 0.0,
        }
        return result
