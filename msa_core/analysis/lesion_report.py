"""Everything the Lesion curves page shows, computed in one place: every ranking the library has, the
random band, each curve's area under the curve, and a plain explanation when the "least important
first" curve falls below the random band.

Why that happens (and why it is not a bug): a Shapley value is a unit's marginal contribution averaged
over coalitions of *every* size, while a lesion curve removes units from the *full* network. Units
that back each other up (redundant units) each cost nothing to remove while the others remain, so they
look unimportant one at a time; yet their Shapley values carry their share of what the group does,
and removing the whole group together costs what the group was worth. Random removal of as many
units rarely takes a whole group, so it costs less. :func:`removal_gap` puts numbers on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._common import as_values
from .lesion_curves import (
    LesionCurve,
    activation_ranking,
    leave_one_out_ranking,
    lesion_curves,
    random_lesion_curve,
    shapley_ranking,
    weight_norm_ranking,
)

__all__ = ["RANKINGS", "LesionCurveReport", "lesion_curve_report", "removal_gap"]

RANKINGS: dict[str, str] = {
    "shapley": "Shapley: most important first",
    "shapley_ascending": "Shapley: least important first",
    "activation": "activation magnitude: largest first",
    "weight_norm": "weight norm (in x out): largest first",
    "leave_one_out": "leave-one-out drop: largest first",
}
"""Ranking key -> curve name, in the order the page lists them."""

RANDOM = "random orders (mean)"


@dataclass
class LesionCurveReport:
    """Lesion curves of one run on one objective.

    Attributes:
        curves: curve name -> :class:`LesionCurve` (``values`` ``(n + 1,)``), one per ranking computed.
        random: the random orders' mean with its band (``lower``, ``upper``).
        auc: curve name (and :data:`RANDOM`) -> normalised area under the curve (the mean objective
            along the removal; lower = the ranking puts the responsible units first).
        skipped: ranking key -> why it could not be computed for this model (e.g. no weight norms).
        explanation: plain sentences for the page (empty when there is nothing to explain).
        n_random: number of random orders.
    """

    curves: dict[str, LesionCurve]
    random: LesionCurve
    auc: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)
    n_random: int = 0

    @property
    def removed(self) -> np.ndarray:
        """``(n + 1,)``: units removed at each point, 0..n."""
        return self.random.n_removed

    def figure_data(self) -> dict[str, Any]:
        """Plain arrays for :func:`msa_core.figures.lesion_curve_figure`, the AUC in every curve's name."""
        return {
            "removed": self.removed,
            "curves": {f"{name} (AUC {self.auc[name]:.3f})": c.values for name, c in self.curves.items()},
            "random_mean": self.random.values, "random_low": self.random.lower, "random_high": self.random.upper,
            "n_random": self.n_random, "random_name": f"{RANDOM} (AUC {self.auc[RANDOM]:.3f})",
        }


def removal_gap(curve: LesionCurve, random: LesionCurve, shapley: np.ndarray, k: int) -> dict[str, float]:
    """Numbers behind a curve at ``k`` units removed, against the random orders.

    Args:
        curve: a lesion curve (its ``order`` and ``values``).
        random: the random curve (``values``: the mean over orders).
        shapley: ``(n,)`` Shapley values of the *same scalar* the curves show (linearity: the mean
            over outputs of the modes for a mean objective).
        k: units removed.

    Returns:
        ``drop`` (what removing the first ``k`` units of ``curve`` cost), ``shapley_sum`` (their
        Shapley values added up), ``random_drop`` (what ``k`` random units cost on average) and
        ``random_shapley_sum`` (the Shapley values of ``k`` random units, on average).
    """
    values = np.asarray(shapley, dtype=np.float64).reshape(-1)
    return {
        "drop": float(curve.values[0] - curve.values[k]),
        "shapley_sum": float(values[curve.order[:k]].sum()),
        "random_drop": float(random.values[0] - random.values[k]),
        "random_shapley_sum": float(values.sum() * k / len(values)),
    }


def _noise_note(result: Any, shapley: np.ndarray | None) -> list[str]:
    """A sentence when the run's standard errors are as large as its values (a small budget)."""
    stderr = getattr(result, "stderr", None)
    if stderr is None or shapley is None:
        return []
    se = as_values(stderr).reshape(len(shapley), -1).mean(1)  # of the mean over outputs (correlated: an upper bound)
    typical_se, typical_value = float(np.median(se)), float(np.median(np.abs(shapley)))
    if not typical_se > 0.5 * typical_value:
        return []
    samples = getattr(result, "n_samples", None)
    return [f"This run's Shapley values are noisy (typical standard error {typical_se:.2g} against a typical "
            f"|value| of {typical_value:.2g}{f', {samples} samples' if samples else ''}): units with similar "
            "values are ranked by chance. A larger budget sharpens the Shapley curves."]


def _explain(report: LesionCurveReport, shapley: np.ndarray | None) -> list[str]:
    """Sentences on the least-important-first curve when it falls below the random band."""
    name = RANKINGS["shapley_ascending"]
    curve = report.curves.get(name)
    if curve is None or report.random.lower is None:
        return []
    below = report.random.lower - curve.values
    if not (below > 1e-12).any():
        return []
    k = int(np.argmax(below))
    lines = [
        f"The least-important-first curve falls below the random band (at {k} units removed: "
        f"{curve.values[k]:.3f}, random band {report.random.lower[k]:.3f} to {report.random.upper[k]:.3f}). "
        "This is not a bug: a Shapley value is a unit's contribution averaged over coalitions of every size, "
        "while a lesion curve removes units together from the full network. Units that back each other up "
        "cost nothing to remove one at a time, yet removing them together costs what they do as a group."
    ]
    if shapley is not None:
        gap = removal_gap(curve, report.random, shapley, k)
        lines.append(
            f"Here the {k} units with the smallest Shapley values add up to {gap['shapley_sum']:.3f} and removing "
            f"them together costs {gap['drop']:.3f}; {k} random units add up to {gap['random_shapley_sum']:.3f} on "
            f"average but cost only {gap['random_drop']:.3f}, because random removal rarely takes all units that "
            "stand in for each other."
        )
    return lines


def lesion_curve_report(
    game: Any,
    result: Any,
    *,
    rankings: Sequence[str] = tuple(RANKINGS),
    metric: str = "mean",
    n_random: int = 20,
    seed: int = 0,
    band: tuple[float, float] = (2.5, 97.5),
    runner: Any = None,
) -> LesionCurveReport:
    """Lesion curves of ``game`` for the chosen rankings, the random band, AUCs and an explanation.

    Args:
        game: the game the curves are scored on (a LesionGame for the activation and weight-norm
            rankings), ``(batch, n) bool -> (batch, *output_shape)``.
        result: the run's ShapleyResult (or values ``(n, *output_shape)``): the Shapley rankings.
        rankings: keys of :data:`RANKINGS` to compute (a ranking this model cannot give is skipped,
            with the reason in ``skipped``).
        metric: the curve's number: ``"mean"`` (the objective averaged over its outputs, e.g. balanced
            accuracy; linear, so the explanation can quote Shapley values) or ``"fidelity"``
            (``1 - |v(S) - v(N)| / |v(empty) - v(N)|``, for images and raw outputs; see
            :func:`msa_core.editor.scalarise`).
        n_random, seed, band: random orders and their percentile band.
        runner: a :class:`~msa_core.estimators.GameRunner` of ``game`` to evaluate through (e.g. one
            with a cancel flag); default: a new one.

    Returns:
        :class:`LesionCurveReport`. All prefixes of all deterministic orders go to the game as one
        coalition matrix; the random orders as another.
    """
    from ..estimators import GameRunner

    unknown = [key for key in rankings if key not in RANKINGS]
    if unknown:
        raise ValueError(f"unknown ranking(s) {unknown}; choose from {list(RANKINGS)}")
    from ..editor import scalarise

    if metric not in ("mean", "fidelity"):
        raise ValueError(f"metric must be 'mean' or 'fidelity'; got {metric!r}")
    runner = runner or GameRunner(game, int(game.n_players))
    reduce: Any = "mean"
    if metric == "fidelity":
        empty, intact = runner.endpoints()
        reduce = lambda v: scalarise(torch.as_tensor(v), intact, empty, "fidelity")  # noqa: E731
    values = as_values(result)
    if values.shape[0] != runner.n_players:
        raise ValueError(f"the run has {values.shape[0]} units but the game has {runner.n_players}")
    makers: dict[str, Callable[[], np.ndarray]] = {
        "shapley": lambda: shapley_ranking(values),
        "shapley_ascending": lambda: shapley_ranking(values, descending=False),
        "activation": lambda: activation_ranking(game),
        "weight_norm": lambda: weight_norm_ranking(game, direction="both"),
        "leave_one_out": lambda: leave_one_out_ranking(runner, reduce=reduce),
    }
    orders: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for key in rankings:
        try:
            orders[RANKINGS[key]] = makers[key]()
        except (TypeError, ValueError, KeyError) as error:
            skipped[key] = str(error)
    curves = lesion_curves(runner, orders, reduce=reduce) if orders else {}
    random = random_lesion_curve(runner, n_orders=n_random, seed=seed, reduce=reduce, band=band)
    auc = {name: curve.auc for name, curve in curves.items()} | {RANDOM: random.auc}
    report = LesionCurveReport(curves=curves, random=random, auc=auc, skipped=skipped, n_random=n_random)
    shapley = values.reshape(values.shape[0], -1).mean(1) if metric == "mean" else None
    report.explanation = _explain(report, shapley) + _noise_note(result, shapley)
    return report
