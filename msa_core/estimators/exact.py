"""Exact Shapley modes from all ``2^n`` coalitions.

``phi_i = sum_S v(S) * w(S, i)`` with ``w(S, i) = (|S|-1)! (n-|S|)! / n!`` when ``i in S`` and
``-|S|! (n-|S|-1)! / n!`` otherwise. Coalitions are enumerated in blocks (bit ``i`` of the block
index is unit ``i``) and folded into ``phi`` with one matrix product per block, so memory stays at one
block of values whatever ``n`` is.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..result import ShapleyResult
from .base import MAX_ELEMENTS_PER_CALL, Estimator, GameRunner, begin_run

__all__ = ["ExactEstimator", "MAX_EXACT_PLAYERS", "all_coalitions"]

MAX_EXACT_PLAYERS = 20
"""Above this, exact enumeration (2^n coalitions) is refused: use a sampling method."""


def all_coalitions(n_players: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Coalitions with integer codes in ``[start, stop)``: bool ``(stop - start, n_players)``."""
    stop = 2**n_players if stop is None else stop
    codes = torch.arange(start, stop, dtype=torch.int64)
    return ((codes.unsqueeze(1) >> torch.arange(n_players)) & 1).bool()


class ExactEstimator(Estimator):
    """All ``2^n`` coalitions, weighted by the Shapley kernel; no sampling error (``stderr`` is None).

    The budget is ignored (the plan is always ``2^n`` evaluations). A run is resumable: the running
    ``phi`` and the next block of coalition codes are kept in ``state.extra``.
    """

    name = "exact"

    def evaluations_per_unit(self, n_players: int) -> int:
        return max(0, 2**n_players - 2)

    def plan(self, n_players: int, budget: int) -> dict[str, int]:
        return {"n_units": 1, "evaluations": 2**n_players}

    def estimate(self, runner: GameRunner, n_players: int, *, budget: int = 0, seed: int = 0, state=None, on_block=None,
                 max_memory: int | None = None, scratch_dir: Any = None) -> ShapleyResult:
        """All coalitions in blocks; ``max_memory`` (bytes; None: unbounded) sizes the blocks, and where
        ``phi (n, outputs)`` does not fit the values are spilled to disk (``(2^n - 2) x outputs x 8`` bytes
        under ``scratch_dir``) and summed by output column chunks (:mod:`msa_core.bounded_linear`)."""
        if n_players > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"method='exact' needs 2^{n_players} game evaluations; the limit is "
                f"{MAX_EXACT_PLAYERS} players (2^{MAX_EXACT_PLAYERS} = {2**MAX_EXACT_PLAYERS:,} coalitions). "
                "Use method='permutation', 'antithetic' or 'owen' instead."
            )
        started = time.perf_counter()
        n = n_players
        w_in, w_out = shapley_weights(n)
        total = 2**n
        state, empty, intact = begin_run(runner, state, total)
        outputs = max(1, math.prod(empty.shape))
        # bound one block's values (rows x outputs) so image games do not exhaust memory
        block = max(1, min(total, 2**16, MAX_ELEMENTS_PER_CALL // outputs))
        memory = None
        if (max_memory is not None or "spill" in state.extra) and n > 1:
            from .spilled import exact_memory_plan, exact_spill, finish_spill

            memory = exact_memory_plan(n, outputs, block, int(max_memory or 2**62), on_block is not None,
                                       force_spill="spill" in state.extra)
            if memory.mode == "spill":
                weights_of = lambda c: _weights(c, w_in, w_out)  # noqa: E731
                values, spill = exact_spill(runner, n, state, empty, intact, weights_of,
                                            (float(w_in[n]), float(w_out[0])), memory, scratch_dir, on_block)
                return finish_spill(spill, self._result(values, state, intact, empty, started), memory)
            # a resumed run keeps its block size: state.next_unit counts blocks
            block = int(state.extra.get("block", block if "phi" in state.extra else memory.block))
            state.extra["block"] = block
        if "phi" not in state.extra:
            phi = torch.zeros((n, *empty.shape), dtype=torch.float64, device=runner.device)
            # endpoints were already evaluated: fold them in directly
            phi += w_in[n] * intact.unsqueeze(0)
            phi -= w_out[0] * empty.unsqueeze(0)
            state.extra["phi"] = phi
        values = state.extra["phi"].to(runner.device, torch.float64)
        starts = range(0, total, block)
        while state.next_unit < len(starts):
            runner.check_cancel()
            start = starts[state.next_unit]
            coalitions = all_coalitions(n, start, min(total, start + block))
            inner = slice(1 if start == 0 else 0, None)
            if start + block >= total:
                inner = slice(inner.start, coalitions.shape[0] - 1)
            coalitions = coalitions[inner]
            if coalitions.shape[0] > 0:
                block_values = runner(coalitions).reshape(coalitions.shape[0], -1)
                weights = _weights(coalitions, w_in, w_out)
                values = values + (weights.to(runner.device).T @ block_values).reshape(values.shape)
            state.extra["phi"] = values
            state.next_unit += 1
            state.n_evaluations = runner.n_evaluations
            if on_block is not None:
                on_block(state)
        result = self._result(values.clone(), state, intact, empty, started)
        if memory is not None:
            result.metadata["memory"] = memory.describe()
        return result

    def _result(self, values: Any, state: Any, intact: torch.Tensor, empty: torch.Tensor, started: float) -> ShapleyResult:
        return ShapleyResult(
            values=values,
            stderr=None,
            n_evaluations=state.n_evaluations,
            intact=intact,
            empty=empty,
            method=self.name,
            seed=None,
            elapsed_s=time.perf_counter() - started,
            n_samples=2**values.shape[0],
        )


def shapley_weights(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_in, w_out)`` float64 ``(n + 1,)``: a coalition of size ``s`` weighs ``w_in[s]`` for its members
    and ``-w_out[s]`` for the others."""
    fact = [math.factorial(k) for k in range(n + 1)]
    w_in = torch.tensor([fact[s - 1] * fact[n - s] / fact[n] if s > 0 else 0.0 for s in range(n + 1)], dtype=torch.float64)
    w_out = torch.tensor([fact[s] * fact[n - s - 1] / fact[n] if s < n else 0.0 for s in range(n + 1)], dtype=torch.float64)
    return w_in, w_out


def _weights(coalitions: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """Shapley weights ``(rows, n)`` of bool coalitions ``(rows, n)``."""
    sizes = coalitions.sum(1)
    return torch.where(coalitions, w_in[sizes].unsqueeze(1), -w_out[sizes].unsqueeze(1))
