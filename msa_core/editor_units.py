"""The editor on runs of any size: which units the grid shows, and the Shapley prediction of a lesion.

A run of the paper's generator has 1,987 units whose modes (one image per latent each) may live on disk
(:class:`~msa_core.ondisk.ChunkedArray`). The editor never reads such a run whole:

* the grid is coloured by each unit's total (:func:`unit_totals`: :func:`msa_core.thumbnails.run_totals`,
  computed a range of units at a time once per run and cached next to its arrays);
* the colour scale is that of the units shown (:func:`msa_core.editor_display.colour_scale`);
* it shows at most :data:`GRID_LIMIT` units at a time (:func:`grid_views`: every unit of a small game, or the
  top units by total and each layer a page at a time);
* the Shapley prediction of a lesion set ``S`` is read from the modes of the units in ``S`` only
  (:class:`ShapleyPrediction`: ``effect(S) = sum_{i in S} values[i]``, the output change the run's values
  predict, and ``intact - effect(S)`` the predicted lesioned output); one click adds or subtracts one mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .ondisk import DEFAULT_CHUNK_BYTES, is_on_disk

__all__ = ["GRID_LIMIT", "GridView", "grid_views", "layer_groups", "unit_totals", "ShapleyPrediction",
           "prediction_applies"]

GRID_LIMIT = 256
"""Most units the editor's grid draws at once (a Plotly scatter of 256 cells redraws in tens of ms)."""


def unit_totals(result: Any) -> np.ndarray:
    """Each unit's mode summed over all outputs, float64 ``(n_units,)``.

    On-disk results: :func:`msa_core.thumbnails.run_totals` (a range of units at a time, cached per run);
    in-memory results: :meth:`~msa_core.result.ShapleyResult.total_contribution`.
    """
    if result.on_disk:
        from .thumbnails import run_totals

        return np.asarray(run_totals(result), dtype=np.float64)
    return result.total_contribution().detach().cpu().numpy().astype(np.float64)


def layer_groups(unit_labels: Sequence[str]) -> dict[str, list[int]]:
    """Unit indices by layer, in player order: ``"net.0:12"`` belongs to layer ``"net.0"`` (the label up to its
    last ``:``; a label without one is its own layer ``""``)."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(unit_labels):
        groups.setdefault(str(label).rpartition(":")[0], []).append(index)
    return groups


@dataclass(frozen=True)
class GridView:
    """One choice of the grid's unit picker: a name (``"net.0 units 0-255 of 1024"``) and the unit indices shown."""

    name: str
    units: tuple[int, ...]


def grid_views(unit_labels: Sequence[str], totals: Any = None, limit: int | None = None) -> list[GridView]:
    """The views the grid offers, each of at most ``limit`` units.

    ``limit`` (default :data:`GRID_LIMIT`). ``n_units <= limit``: one view of every unit. Otherwise: the ``limit`` units with the largest ``|totals|``
    (when given and not all zero), then each layer (:func:`layer_groups`) in pages of ``limit`` units.
    """
    n = len(unit_labels)
    limit = max(1, int(GRID_LIMIT if limit is None else limit))
    if n <= limit:
        return [GridView(f"all {n} units", tuple(range(n)))]
    views = []
    if totals is not None and np.any(np.asarray(totals)):
        order = np.argsort(-np.abs(np.asarray(totals, dtype=np.float64)), kind="stable")[:limit]
        views.append(GridView(f"top {limit} by |Shapley value|", tuple(int(i) for i in sorted(order))))
    for layer, indices in layer_groups(unit_labels).items():
        for start in range(0, len(indices), limit):
            page = indices[start:start + limit]
            span = "" if len(indices) <= limit else f" units {start}-{start + len(page) - 1} of {len(indices)}"
            views.append(GridView(f"{layer or 'units'} ({len(indices)} units){span}", tuple(page)))
    return views


def prediction_applies(result: Any, output_shape: Sequence[int]) -> bool:
    """True when the run's modes have the editor's output shape (the run's game is the raw output on the same
    inputs), so a sum of modes is a predicted change of that output."""
    return result is not None and tuple(result.output_shape) == tuple(int(s) for s in output_shape)


class ShapleyPrediction:
    """The change of the output a run's Shapley values predict for a lesion set, read unit by unit.

    ``effect(S) = sum_{i in S} values[i]`` of shape ``result.output_shape`` (float64): lesioning ``S`` takes this
    much off the intact output, by the values' additivity. Only the modes of units in ``S`` are read (rows of an
    on-disk result, at most ``max_bytes`` at a time), and the last set is kept, so a set that differs from it by a
    few units costs those few rows.

    Args:
        result: a :class:`~msa_core.result.ShapleyResult` (values in memory or on disk).
        max_bytes: most bytes of modes read at once.
    """

    def __init__(self, result: Any, max_bytes: int = DEFAULT_CHUNK_BYTES):
        self.result = result
        self.max_bytes = int(max_bytes)
        self._last: tuple[frozenset[int], torch.Tensor] = (frozenset(), torch.zeros(result.output_shape,
                                                                                    dtype=torch.float64))

    def _sum_rows(self, units: Sequence[int]) -> torch.Tensor:
        """``sum_{i in units} values[i]``, float64 ``(*output_shape)``, a block of rows at a time."""
        total = torch.zeros(self.result.output_shape, dtype=torch.float64)
        row_bytes = max(1, int(np.prod(self.result.output_shape)) * 8)
        step = max(1, self.max_bytes // row_bytes)
        units = sorted(units)
        values = self.result.values
        for start in range(0, len(units), step):
            block = units[start:start + step]
            if is_on_disk(values):
                rows = torch.from_numpy(values.read_rows(block))
            else:
                rows = values[torch.as_tensor(block, dtype=torch.long)]
            total += rows.double().sum(0)
        return total

    def effect(self, lesioned: Iterable[int]) -> torch.Tensor:
        """The predicted change ``sum_{i in lesioned} values[i]``: float64 ``(*output_shape)``."""
        wanted = frozenset(int(i) for i in lesioned)
        if any(not 0 <= i < self.result.n_players for i in wanted):
            raise IndexError(f"unit indices must be in [0, {self.result.n_players})")
        known, total = self._last
        added, removed = wanted - known, known - wanted
        if len(added) + len(removed) < len(wanted):  # fewer rows to read than summing anew
            total = total + self._sum_rows(list(added)) - self._sum_rows(list(removed))
        else:
            total = self._sum_rows(list(wanted))
        self._last = (wanted, total)
        return total.clone()

    def lesioned_output(self, intact: torch.Tensor, lesioned: Iterable[int]) -> torch.Tensor:
        """The predicted lesioned output ``intact - effect(lesioned)`` (float64, the shape of ``intact``)."""
        return intact.detach().cpu().double() - self.effect(lesioned).reshape(intact.shape)
