"""Lesion curves: remove units cumulatively in the order of a ranking and record the objective.

A lesion curve for an order ``o = (o_1, ..., o_m)`` is ``y_k = v(N minus {o_1..o_k})`` for
``k = 0..m`` (``y_0 = v(N)``). All ``m + 1`` prefixes are built as one coalition matrix and the game is
called on it in batches, never coalition by coalition (see :mod:`.removal`). Neuron Shapley (Ghorbani &
Zou 2020) compares such curves for Shapley-ranked removal against random, activation-based and
weight-based orders: a ranking that captures responsibility destroys performance fastest.

Rankings (defined in :mod:`.rankings`, importable from here too; each returns an int64 order
``(n_players,)``, most important first):

* :func:`shapley_ranking` by Shapley value (descending or ascending; a chosen output or the sum);
* :func:`random_orders` (several seeded orders; :func:`random_lesion_curve` gives mean and band);
* :func:`activation_ranking`: mean ``|activation|`` of each unit over the game's inputs;
* :func:`weight_norm_ranking`: L2 norm of the unit's incoming and/or outgoing weights;
* :func:`leave_one_out_ranking`: the drop when the unit alone is lesioned (``n`` evaluations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ._common import Reduce, n_players_of, scalar_summary
from .rankings import (  # noqa: F401 - re-exported: msa_core.analysis.lesion_curves kept its names
    activation_ranking,
    leave_one_out_ranking,
    shapley_ranking,
    unit_activations,
    weight_norm_ranking,
)
from .removal import check_order, evaluate_coalitions, prefix_coalitions

__all__ = [
    "LesionCurve",
    "prefix_coalitions",
    "lesion_curve",
    "lesion_curves",
    "random_orders",
    "random_lesion_curve",
    "shapley_ranking",
    "activation_ranking",
    "unit_activations",
    "weight_norm_ranking",
    "leave_one_out_ranking",
    "area_under_curve",
    "units_to_reach",
]


@dataclass
class LesionCurve:
    """The objective while units are removed one after the other.

    Attributes:
        order: int64 ``(m,)``: the units in the order they are removed (for a random curve, the
            first random order).
        values: float64 ``(m + 1,)``: ``values[k]`` is the scalar objective with the first ``k``
            units of ``order`` lesioned (``values[0]`` is the intact model). For a random curve, the
            mean over the orders.
        lower, upper: float64 ``(m + 1,)`` band (e.g. 5th and 95th percentiles over random orders)
            or None.
        outputs: float64 ``(m + 1, *output_shape)`` raw game values along the curve (None for a random
            curve).
        label: a name for legends ("Shapley", "random", ...).
        n_players: number of players of the game.
    """

    order: np.ndarray
    values: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    outputs: np.ndarray | None = None
    label: str = ""
    n_players: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_removed(self) -> np.ndarray:
        """``(m + 1,)``: number of units removed at each point, 0..m."""
        return np.arange(len(self.values))

    @property
    def auc(self) -> float:
        """Normalised area under the curve (see :func:`area_under_curve`)."""
        return area_under_curve(self)

    def units_to_reach(self, level: float) -> int | None:
        """Fewest units removed for the objective to fall to ``level`` or below (None if never)."""
        return units_to_reach(self, level)

    def to_frame(self):
        """Long table: ``n_removed``, ``value``, ``lower``, ``upper``, ``label``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "n_removed": self.n_removed,
                "value": self.values,
                "lower": self.lower if self.lower is not None else np.full(len(self.values), np.nan),
                "upper": self.upper if self.upper is not None else np.full(len(self.values), np.nan),
                "label": self.label,
            }
        )


def lesion_curve(
    game: Callable,
    order: Any,
    *,
    n_players: int | None = None,
    reduce: Reduce = None,
    batch_size: int | None = None,
    label: str = "",
) -> LesionCurve:
    """Remove the units of ``order`` cumulatively and record the objective (one batched game call).

    Args:
        game: a game (bool ``(batch, n)`` -> ``(batch, *output_shape)``), e.g. a LesionGame.
        order: int ``(m,)``: units in removal order, most important first (``m <= n``).
        n_players: number of players (default ``game.n_players``).
        reduce: how a vector value becomes a scalar (default: mean over outputs; see
            :data:`~msa_core.analysis._common.Reduce`).
        batch_size: rows per game call (None: the whole matrix at once; a LesionGame batches inside).
        label: name of the curve.

    Returns:
        :class:`LesionCurve` with ``values`` ``(m + 1,)`` and ``outputs`` ``(m + 1, *output_shape)``.
    """
    n = n_players_of(game, n_players)
    order = check_order(order, n)
    outputs = evaluate_coalitions(game, prefix_coalitions(order, n), n, batch_size)
    return LesionCurve(
        order=order, values=scalar_summary(outputs, reduce), outputs=outputs, label=label, n_players=n
    )


def lesion_curves(
    game: Callable,
    orders: dict[str, Any],
    *,
    n_players: int | None = None,
    reduce: Reduce = None,
    batch_size: int | None = None,
) -> dict[str, LesionCurve]:
    """Several named orders at once: all prefixes of all orders in one coalition matrix.

    Args:
        orders: name -> int order ``(m,)`` (all of the same length ``m``).

    Returns:
        name -> :class:`LesionCurve`.
    """
    n = n_players_of(game, n_players)
    names = list(orders)
    stacked = np.stack([check_order(orders[name], n) for name in names])
    outputs = evaluate_coalitions(game, prefix_coalitions(stacked, n), n, batch_size)
    m1 = stacked.shape[1] + 1
    curves = {}
    for q, name in enumerate(names):
        block = outputs[q * m1 : (q + 1) * m1]
        curves[name] = LesionCurve(
            order=stacked[q], values=scalar_summary(block, reduce), outputs=block, label=name, n_players=n
        )
    return curves


def random_orders(n_players: int, n_orders: int, seed: int = 0, length: int | None = None) -> np.ndarray:
    """``n_orders`` seeded random removal orders: int64 ``(n_orders, length or n_players)``.

    Order ``q`` is drawn from ``(seed, q)``, so adding orders never changes the earlier ones.
    """
    length = n_players if length is None else int(length)
    return np.stack(
        [np.random.default_rng([seed, q]).permutation(n_players)[:length] for q in range(n_orders)]
    ).astype(np.int64)


def random_lesion_curve(
    game: Callable,
    *,
    n_orders: int = 20,
    seed: int = 0,
    n_players: int | None = None,
    reduce: Reduce = None,
    band: tuple[float, float] = (5.0, 95.0),
    batch_size: int | None = None,
    label: str = "random",
) -> LesionCurve:
    """Mean lesion curve over ``n_orders`` random orders with a percentile band.

    Returns:
        :class:`LesionCurve`: ``values`` the mean ``(n + 1,)``, ``lower``/``upper`` the ``band``
        percentiles, ``extra["curves"]`` all curves ``(n_orders, n + 1)``.
    """
    n = n_players_of(game, n_players)
    orders = random_orders(n, n_orders, seed)
    outputs = evaluate_coalitions(game, prefix_coalitions(orders, n), n, batch_size)
    curves = scalar_summary(outputs, reduce).reshape(n_orders, n + 1)
    return LesionCurve(
        order=orders[0],
        values=curves.mean(0),
        lower=np.percentile(curves, band[0], axis=0),
        upper=np.percentile(curves, band[1], axis=0),
        label=label,
        n_players=n,
        extra={"curves": curves, "orders": orders, "band": band},
    )


# --------------------------------------------------------------------------- summaries
def area_under_curve(curve: LesionCurve | Sequence[float], *, normalise: bool = True) -> float:
    """Area under a lesion curve by the trapezoid rule.

    With ``normalise`` (default) the x axis is the *fraction* of the order removed (0..1), so the
    area is the mean objective along the removal and is comparable across layer sizes. A lower area
    means the ranking puts the responsible units first.
    """
    values = np.asarray(curve.values if isinstance(curve, LesionCurve) else curve, dtype=np.float64)
    if len(values) < 2:
        return float(values[0]) if len(values) else float("nan")
    x = np.arange(len(values), dtype=np.float64)
    if normalise:
        x /= len(values) - 1
    return float(np.trapezoid(values, x))


def units_to_reach(curve: LesionCurve | Sequence[float], level: float) -> int | None:
    """Fewest units removed for the curve to be at or below ``level`` (e.g. chance + a margin).

    Returns None when the curve never gets there.
    """
    values = np.asarray(curve.values if isinstance(curve, LesionCurve) else curve, dtype=np.float64)
    hits = np.nonzero(values <= level)[0]
    return int(hits[0]) if len(hits) else None
