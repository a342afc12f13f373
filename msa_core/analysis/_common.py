"""Small helpers shared by the analysis modules: array conversion, scalar summaries, game calls."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ["as_values", "scalar_summary", "call_game", "run_game", "n_players_of", "Reduce"]

Reduce = Callable[[np.ndarray], np.ndarray] | str | int | None
"""How a vector game value becomes one number per coalition.

``None`` or ``"mean"``: mean over outputs; ``"sum"``: sum over outputs; an int: that (flat) output;
a callable: ``(batch, *output_shape) -> (batch,)``.
"""


def as_values(result_or_values: Any) -> np.ndarray:
    """Modes as a float64 numpy array ``(n_players, *output_shape)`` from a ShapleyResult, tensor or array."""
    values = result_or_values
    if not isinstance(values, (torch.Tensor, np.ndarray, list, tuple)):
        values = getattr(values, "values", values)  # a ShapleyResult (a tensor's .values is a method)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("expected values of shape (n_players, *output_shape); got a scalar")
    return values


def scalar_summary(values: Any, reduce: Reduce = None) -> np.ndarray:
    """One number per row: ``(batch, *output_shape)`` -> ``(batch,)`` float64 (see :data:`Reduce`)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if callable(reduce):
        out = np.asarray(reduce(values), dtype=np.float64)
        if out.shape != (values.shape[0],):
            raise ValueError(f"reduce must map (batch, ...) to (batch,); it returned shape {out.shape}")
        return out
    flat = values.reshape(values.shape[0], -1)
    if flat.shape[1] == 1 and reduce in (None, "mean", "sum"):
        return flat[:, 0]
    if reduce is None or reduce == "mean":
        return flat.mean(1)
    if reduce == "sum":
        return flat.sum(1)
    if isinstance(reduce, (int, np.integer)) and not isinstance(reduce, bool):
        if not -flat.shape[1] <= reduce < flat.shape[1]:
            raise ValueError(f"output index {reduce} is out of range for {flat.shape[1]} outputs")
        return flat[:, int(reduce)]
    raise ValueError(f"reduce must be None, 'mean', 'sum', an output index or a callable; got {reduce!r}")


def n_players_of(game: Any, n_players: int | None) -> int:
    """``n_players`` if given, else ``game.n_players``; a clear error when neither exists."""
    if n_players is not None:
        return int(n_players)
    found = getattr(game, "n_players", None)
    if found is None:
        raise ValueError("pass n_players= for a game that has no n_players attribute")
    return int(found)


def call_game(game: Callable, coalitions: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
    """Evaluate a bool coalition matrix ``(batch, n_players)``; returns float64 ``(batch, *output_shape)``.

    Goes through :class:`~msa_core.estimators.GameRunner`, the one game-call path of the library
    (validation, NaN check, out-of-memory halving, batching by ``batch_size`` rows or the game's
    preferred size): the game sees batches, never single coalitions. Array-like returns are accepted.
    """
    return run_game(game, coalitions, batch_size).cpu().numpy()


def run_game(game: Callable, coalitions: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """As :func:`call_game`, as a float64 tensor (CPU)."""
    from ..estimators.base import GameRunner

    if coalitions.dtype != torch.bool or coalitions.ndim != 2:
        raise ValueError("coalitions must be a bool tensor (batch, n_players)")
    runner = GameRunner(_as_tensor_game(game), coalitions.shape[1], batch_size=batch_size)
    with torch.no_grad():
        return runner(coalitions)


def _as_tensor_game(game: Callable) -> Callable:
    """``game`` with array-like values converted to tensors (analyses accept numpy-returning games)."""

    def tensor_game(coalitions: torch.Tensor) -> torch.Tensor:
        values = game(coalitions)
        return values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))

    for name in ("preferred_batch_size", "n_players", "unit_labels"):
        if hasattr(game, name):
            setattr(tensor_game, name, getattr(game, name))
    return tensor_game
