"""Named array types shared by games and estimators.

The engine speaks in two kinds of tensors:

* ``CoalitionMatrix``: ``torch.bool`` of shape ``(batch, n_players)``; ``True`` means the unit is
  intact, ``False`` that it is lesioned. Every estimator builds these and hands a whole batch to the
  game at once.
* ``GameValues``: floating tensor of shape ``(batch, *output_shape)``, one game value per coalition.
  A scalar game has ``output_shape == ()``; a tensor game (an image, a per-class vector) keeps the
  model output's shape, and its Shapley values are *Shapley modes* of that shape.

``Permutations`` are join orders: ``int64`` of shape ``(m, n_players)``, each row a permutation of
``range(n_players)``; the unit at position 0 joins the empty coalition first.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

import torch

__all__ = ["CoalitionMatrix", "GameValues", "Permutations", "Game", "ChainGame"]

CoalitionMatrix: TypeAlias = torch.Tensor
"""``torch.bool`` tensor ``(batch, n_players)``: True = unit intact."""

GameValues: TypeAlias = torch.Tensor
"""Floating tensor ``(batch, *output_shape)``: the game's value for each coalition."""

Permutations: TypeAlias = torch.Tensor
"""``int64`` tensor ``(m, n_players)``: join orders, one permutation of the players per row."""


@runtime_checkable
class Game(Protocol):
    """Anything callable on a coalition matrix.

    ``game(coalitions)`` takes a :data:`CoalitionMatrix` ``(batch, n_players)`` and returns
    :data:`GameValues` ``(batch, *output_shape)``.
    """

    def __call__(self, coalitions: CoalitionMatrix) -> GameValues: ...


@runtime_checkable
class ChainGame(Game, Protocol):
    """A game that can also evaluate whole join orders faster than coalition by coalition.

    ``evaluate_permutations(permutations)`` takes :data:`Permutations` ``(m, n_players)`` and returns
    ``(m, n_players + 1, *output_shape)``: entry ``[p, j]`` is the value of the coalition made of the
    first ``j`` players of permutation ``p`` (``j = 0`` is the empty coalition, ``j = n`` the full one).
    Permutation estimators use it when a game offers it (for example a lesion game whose next
    operation is linear, where prefix sums make each join O(1) in the layer width).
    """

    def evaluate_permutations(self, permutations: Permutations) -> torch.Tensor: ...
