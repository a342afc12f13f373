"""Lesion curves: remove units cumulatively in the order of a ranking and record the objective.

A lesion curve for an order ``o = (o_1, ..., o_m)`` is ``y_k = v(N minus {o_1..o_k})`` for
``k = 0..m`` (``y_0 = v(N)``). All ``m + 1`` prefixes are built as one coalition matrix and the game is
called on it in batches, never coalition by coalition. Neuron Shapley (Ghorbani & Zou 2020) compares
such curves for Shapley-ranked removal against random, activation-based and weight-based orders: a
ranking that captures responsibility destroys performance fastest.

Rankings (each returns an int64 order ``(n_players,)``, most important first):

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
import torch
from torch import nn

from ._common import Reduce, as_values, n_players_of, scalar_summary

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


def _evaluate(game: Callable, coalitions: torch.Tensor, n_players: int, batch_size: int | None) -> np.ndarray:
    """Game values float64 ``(batch, *output_shape)`` of a bool coalition matrix ``(batch, n_players)``,
    through :class:`~msa_core.estimators.GameRunner` (validation, NaN check, out-of-memory halving,
    cancel). ``game`` may already be a GameRunner (e.g. one with a cancel flag); it is used as it is."""
    from ..estimators import GameRunner

    if coalitions.dtype != torch.bool or coalitions.ndim != 2:
        raise ValueError("coalitions must be a bool tensor (batch, n_players)")
    runner = game if isinstance(game, GameRunner) else GameRunner(game, n_players, batch_size=batch_size)
    with torch.no_grad():
        return runner(coalitions).cpu().numpy()


def _check_order(order: Any, n_players: int) -> np.ndarray:
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
        _check_order(row, n_players)
    r, m = orders.shape
    # position of each unit in its order (m for units the order never removes)
    position = np.full((r, n_players), m, dtype=np.int64)
    np.put_along_axis(position, orders, np.arange(m)[None, :].repeat(r, 0), axis=1)
    k = np.arange(m + 1)[None, :, None]
    intact = position[:, None, :] >= k  # unit at position p is removed once k > p
    return torch.from_numpy(intact.reshape(r * (m + 1), n_players))


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
    order = _check_order(order, n)
    outputs = _evaluate(game, prefix_coalitions(order, n), n, batch_size)
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
    stacked = np.stack([_check_order(orders[name], n) for name in names])
    outputs = _evaluate(game, prefix_coalitions(stacked, n), n, batch_size)
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
    outputs = _evaluate(game, prefix_coalitions(orders, n), n, batch_size)
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


# --------------------------------------------------------------------------- rankings
def shapley_ranking(result: Any, *, output: int | str | None = None, descending: bool = True) -> np.ndarray:
    """Units ordered by Shapley value: int64 ``(n_players,)``.

    Args:
        result: a ShapleyResult, or values ``(n_players, *output_shape)``.
        output: for a vector game, rank by this flat output index; None or "sum" by the sum over
            outputs (the unit's total contribution); "mean" is the same order.
        descending: largest value first (the units whose removal should hurt most); False for the
            ascending order (least helpful, or harmful, units first).
    """
    values = as_values(result)
    flat = values.reshape(values.shape[0], -1)
    if output is None or output in ("sum", "mean"):
        score = flat.sum(1)
    else:
        score = flat[:, int(output)]
    # stable sort on the negated score keeps ties in unit order
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


def unit_activations(game: Any) -> np.ndarray:
    """Mean ``|activation|`` of every player over the game's inputs: float64 ``(n_players,)``.

    Needs a :class:`~msa_core.games.LesionGame` (its ``model``, ``inputs`` and ``resolved`` units). A
    recording hook sits on each unit module during one intact forward pass and is removed in
    ``finally``. A unit's activation is averaged over every axis except its unit axis (inputs,
    positions, pixels); grouped units (``group_size > 1``) average over their group.
    """
    from ..lesion import record_activations

    resolved = getattr(game, "resolved", None)
    if resolved is None or not hasattr(game, "model") or not hasattr(game, "inputs"):
        raise TypeError("activation ranking needs a LesionGame (with .model, .inputs and .resolved)")
    recorded, _ = record_activations(
        game.model, game.inputs, {index: (units.module, units.spec.site) for index, units in enumerate(resolved)}
    )
    means = []
    for index, units in enumerate(resolved):
        activation = recorded[index].to(torch.float64).abs()
        # -inf-free: router logits are finite when intact; guard anyway
        activation = torch.nan_to_num(activation, nan=0.0, posinf=0.0, neginf=0.0)
        moved = activation.movedim(units.axis, -1)
        per_entry = moved.reshape(-1, moved.shape[-1]).mean(0)
        means.append(per_entry.reshape(units.n_units, units.spec.group_size).mean(1))
    return torch.cat(means).cpu().numpy()


def activation_ranking(game: Any, *, descending: bool = True) -> np.ndarray:
    """Units ordered by mean ``|activation|`` over the inputs (largest first): int64 ``(n_players,)``."""
    score = unit_activations(game)
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _unit_norms(module: nn.Module, side: str) -> torch.Tensor:
    """Per-unit L2 norms of a weighted module's weights on its ``"out"`` or ``"in"`` side."""
    weight = module.weight.detach().to(torch.float64)
    transposed = isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    # Linear/Conv weights are (out, in, ...); transposed convolutions store (in, out, ...)
    axis = (0 if side == "out" else 1) if not transposed else (1 if side == "out" else 0)
    moved = weight.movedim(axis, 0)
    return moved.reshape(moved.shape[0], -1).norm(dim=1)


def _flatten_weighted(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _WEIGHTED)]


def _layer_weight_norms(model: nn.Module, path: str, n_units: int, direction: str) -> np.ndarray:
    """Incoming and/or outgoing weight norms of the units at the output of module ``path``.

    Incoming weights: the last weighted (Linear/Conv) module inside the unit module, or else the
    nearest weighted sibling before it in its parent ``nn.Sequential``. Outgoing: the first weighted
    module after it among its siblings (or the parent's siblings). The unit count must match the
    weight's width, or the norms are not derivable and a ValueError says so.
    """
    modules = dict(model.named_modules())
    module = modules[path]
    parent_path, _, name = path.rpartition(".")
    parent = modules[parent_path] if parent_path else model

    def siblings_after(container_path: str, child_name: str) -> list[nn.Module]:
        container = modules[container_path] if container_path else model
        names = [n for n, _ in container.named_children()]
        if child_name not in names:
            return []
        after = [m for n, m in container.named_children()][names.index(child_name) + 1 :]
        found = [w for m in after for w in _flatten_weighted(m)]
        if found or not container_path:
            return found
        up, _, up_name = container_path.rpartition(".")
        return siblings_after(up, up_name)

    incoming_candidates = _flatten_weighted(module)
    if not incoming_candidates and isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        before = [m for n, m in parent.named_children()][: names.index(name)]
        incoming_candidates = [w for m in before for w in _flatten_weighted(m)]
    incoming = incoming_candidates[-1] if incoming_candidates else None
    outgoing_candidates = siblings_after(parent_path, name)
    outgoing = outgoing_candidates[0] if outgoing_candidates else None

    norms = []
    if direction in ("incoming", "both"):
        if incoming is None:
            raise ValueError(f"no Linear/Conv layer feeds the units of {path!r}: incoming weight norms are not derivable")
        norms.append(_unit_norms(incoming, "out"))
    if direction in ("outgoing", "both"):
        if outgoing is None:
            raise ValueError(f"no Linear/Conv layer reads the units of {path!r}: outgoing weight norms are not derivable")
        norms.append(_unit_norms(outgoing, "in"))
    for values in norms:
        if values.shape[0] != n_units:
            raise ValueError(
                f"the weights next to {path!r} have {values.shape[0]} units where the layer has {n_units}: "
                "weight norms are not derivable for this layer"
            )
    result = norms[0]
    for values in norms[1:]:
        result = result * values
    return result.numpy()


def weight_norm_ranking(game: Any, *, direction: str = "outgoing", descending: bool = True) -> np.ndarray:
    """Units ordered by the L2 norm of their weights (largest first): int64 ``(n_players,)``.

    For each unit module of a LesionGame: "incoming" is the norm of the weights that produce the
    unit (row ``i`` of the Linear/Conv before it, e.g. ``W1[i, :]``), "outgoing" the norm of the
    weights that read it (column ``i`` of the next Linear/Conv, e.g. ``W2[:, i]``), "both" their
    product (the scale of the unit's whole path, which is what a piecewise-linear unit transmits).
    Only units on the output of a module (site "output", group size 1) inside ``nn.Sequential``-like
    models are supported; anything else raises ValueError.
    """
    if direction not in ("incoming", "outgoing", "both"):
        raise ValueError(f"direction must be 'incoming', 'outgoing' or 'both'; got {direction!r}")
    resolved = getattr(game, "resolved", None)
    if resolved is None or not hasattr(game, "model"):
        raise TypeError("weight-norm ranking needs a LesionGame (with .model and .resolved)")
    scores = []
    for units in resolved:
        if units.spec.site != "output" or units.spec.group_size != 1:
            raise ValueError(f"weight norms are only derivable for single units on a module's output ({units.spec.path!r})")
        scores.append(_layer_weight_norms(game.model, units.spec.path, units.n_units, direction))
    score = np.concatenate(scores)
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


def leave_one_out_ranking(
    game: Callable,
    *,
    n_players: int | None = None,
    reduce: Reduce = None,
    batch_size: int | None = None,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Units ordered by the drop when each alone is lesioned, largest drop first (``n + 1`` evaluations).

    Returns:
        int64 order ``(n_players,)``; with ``return_scores`` also the drops ``v(N) - v(N - {i})``
        ``(n_players,)`` of the scalar summary.
    """
    n = n_players_of(game, n_players)
    coalitions = torch.ones((n + 1, n), dtype=torch.bool)
    coalitions[torch.arange(1, n + 1), torch.arange(n)] = False
    values = scalar_summary(_evaluate(game, coalitions, n, batch_size), reduce)
    drops = values[0] - values[1:]
    order = np.argsort(-drops, kind="stable").astype(np.int64)
    return (order, drops) if return_scores else order


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
