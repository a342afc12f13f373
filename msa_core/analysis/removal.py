"""Removing units from a game: prefix coalition matrices and the one batched evaluation of a coalition
matrix (through :class:`~msa_core.estimators.GameRunner`), shared by the lesion curves and the
leave-one-out ranking.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ["prefix_coalitions", "evaluate_coalitions", "check_order"]


def evaluate_coalitions(
    game: Callable, coalitions: torch.Tensor, n_players: int, batch_size: int | None
) -> np.ndarray:
    """Game values float64 ``(batch, *output_shape)`` of a bool coalition matrix ``(batch, n_players)``,
    through :class:`~msa_core.estimators.GameRunner` (validation, NaN check, out-of-memory halving,
    cancel). ``game`` may already be a GameRunner (e.g. one with a cancel flag); it is used as it is."""
    from ..estimators import GameRunner

    if coalitions.dtype != torch.bool or coalitions.ndim != 2:
        raise ValueError("coalitions must be a bool tensor (batch, n_players)")
    runner = game if isinstance(game, GameRunner) else GameRunner(game, n_players, batch_size=batch_size)
    with torch.no_grad():
        return runner(coalitions).cpu().numpy()


def check_order(order: Any, n_players: int) -> np.ndarray:
    """``order`` as int64 ``(m,)``; ValueError if it names a unit outside ``range(n_players)`` or twice."""
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    if order.size and (order.min() < 0 or order.max() >= n_players):
        raise ValueError(f"order holds unit indices outside range({n_players})")
    if len(np.unique(order)) != len(order):
        raise ValueError("order names a unit twice")
    return order


def prefix_coalitions(orders: Any, n_players: int) -> torch.Tensor:
    """Coalitions with the first ``k`` units of each order lesioned, ``k = 0..m``.

    Args:
        orders: int ``(m,)`` or ``(r, m)``: removal orders (each a list of distinct units).
        n_players: number of players ``n``.

    Returns:
        bool ``(r * (m + 1), n)`` (True = intact): rows ``[q * (m + 1), (q + 1) * (m + 1))`` belong to
        order ``q``; row ``k`` of a block has the first ``k`` units of that order lesioned.
    """
    orders = np.atleast_2d(np.asarray(orders, dtype=np.int64))
    for row in orders:
        check_order(row, n_players)
    r, m = orders.shape
    # position of each unit in its order (m for units the order never removes)
    position = np.full((r, n_players), m, dtype=np.int64)
    np.put_along_axis(position, orders, np.arange(m)[None, :].repeat(r, 0), axis=1)
    k = np.arange(m + 1)[None, :, None]
    intact = position[:, None, :] >= k  # unit at position p is removed once k > p
    return torch.from_numpy(intact.reshape(r * (m + 1), n_players))
