"""What the editor draws: the unit grid's colour scale and the output images' grey range (no Streamlit here).

* :func:`colour_scale` / :func:`grid_figure`: the grid is coloured on the scale of the units it shows, robust to
  a few units with huge totals (the paper generator's 3 output channels have totals of about ±2,000, ~100x its
  hidden channels': on their scale every hidden cell is grey);
* :func:`image_range`: the value scale of image outputs (grey, or each channel of an RGB one), the model's output bounds when its last module is a
  bounded activation (a generator's Tanh: [-1, 1]), else the intact output's range, so the edited image is drawn
  on the intact one's scale (a lesion that darkens the image shows darker, not renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .editor_units import layer_groups
from .live_views import unit_grid_figure

__all__ = ["MIN_SCALE_UNITS", "ColourScale", "colour_scale", "grid_figure", "image_range", "BOUNDED_OUTPUTS",
           "short_number"]

MIN_SCALE_UNITS = 8
"""A layer with fewer units than this among those shown does not set the grid's colour scale (a generator's
3 output channels have totals ~100x the hidden channels': scaled to them, every hidden cell is grey)."""


@dataclass(frozen=True)
class ColourScale:
    """The grid's diverging colour scale ``[-limit, limit]`` and what set it.

    Attributes:
        limit: the scale's end (> 0); cells beyond it take the end colour (their hover shows the true value).
        layers: the layer whose units set it (empty: all units shown did, no layer had enough of them).
        n_clipped: units shown with ``|total| > limit``.
        title: the colour bar's title (HTML line breaks), e.g. ``"Shapley value<br>(unit total)<br>3 beyond ±12.5"``.
    """

    limit: float
    layers: tuple[str, ...]
    n_clipped: int
    title: str

    @property
    def caption(self) -> str:
        """One sentence for below the grid when units are clipped (empty when none is)."""
        if not self.n_clipped:
            return ""
        source = f"set by layer {self.layers[0]}" if self.layers else "set by all units shown"
        units = "unit lies" if self.n_clipped == 1 else "units lie"
        return (f"Colour scale ±{short_number(self.limit)} ({source}): {self.n_clipped} {units} beyond it and take "
                "the end colour; hover a cell for its value.")


def colour_scale(totals: Any, unit_labels: Sequence[str], quantile: float = 0.99,
                 min_units: int | None = None) -> ColourScale:
    """The colour scale of the grid's shown units, robust to a few units with huge totals.

    ``totals`` ``(n,)``: the shown units' totals; ``unit_labels`` ``(n,)``: their labels (their layer:
    :func:`layer_groups`). Each layer with at least ``min_units`` (default :data:`MIN_SCALE_UNITS`, at most
    ``n``) units shown gives the ``quantile`` of its units' ``|totals|`` (the ``"lower"`` one: a unit's own value,
    so one outlier among a few dozen units does not set it by interpolation); the limit is the largest of these.
    A layer with fewer units shown (the generator's 3 output channels) does not set it, so the hidden layers'
    differences stay visible and those units saturate. When no layer qualifies (or they are all zero), the
    ``quantile`` of all units' ``|totals|``, then their maximum, then 1.
    """
    v = np.abs(np.asarray(totals, dtype=np.float64).reshape(-1))
    if len(unit_labels) != v.size:
        raise ValueError(f"{len(unit_labels)} unit labels for {v.size} totals")
    if v.size == 0:
        return ColourScale(1.0, (), 0, _TITLE)
    least = min(int(MIN_SCALE_UNITS if min_units is None else min_units), v.size)
    by_layer = {layer: np.quantile(v[idx], quantile, method="lower") for layer, idx in layer_groups(unit_labels).items()
                if len(idx) >= least}
    by_layer = {layer: float(q) for layer, q in by_layer.items() if q > 0}
    if by_layer:
        limit = max(by_layer.values())
        layers = tuple(layer for layer in by_layer if by_layer[layer] == limit)  # the layer that sets it, first
    else:
        limit, layers = float(np.quantile(v, quantile, method="lower")) or float(v.max()) or 1.0, ()
    n_clipped = int(np.count_nonzero(v > limit))
    title = _TITLE + (f"<br>{n_clipped} beyond ±{short_number(limit)}" if n_clipped else "")
    return ColourScale(limit, layers, n_clipped, title)


_TITLE = "Shapley value<br>(unit total)"


def short_number(x: float) -> str:
    """A colour-scale end for people: ``4,070``, ``39.5``, ``0.0198``, ``1.2e-07``."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def grid_figure(totals: Any, lesioned: Sequence[int], unit_indices: Sequence[int],
                unit_labels: Sequence[str]) -> tuple[dict[str, Any], ColourScale]:
    """The editor's grid of the shown units (:func:`msa_core.live_views.unit_grid_figure`) on their own
    :func:`colour_scale`, its colour bar titled with what the colour is and how many cells are clipped.

    ``totals``, ``unit_indices``, ``unit_labels``: ``(n,)`` each, of the shown units; ``lesioned``: game indices.
    Returns ``(figure dict, scale)``.
    """
    scale = colour_scale(totals, unit_labels)
    figure = unit_grid_figure(totals, lesioned, unit_indices=unit_indices, unit_labels=unit_labels, limit=scale.limit,
                              colour_title=scale.title)
    return figure, scale


BOUNDED_OUTPUTS: dict[type, tuple[float, float]] = {nn.Tanh: (-1.0, 1.0), nn.Sigmoid: (0.0, 1.0),
                                                     nn.Hardsigmoid: (0.0, 1.0)}
"""Final activations with known bounds: an image model ending in one is drawn on those bounds (a Hardtanh, and
its subclass ReLU6, on its own ``min_val .. max_val``)."""


def _bounds(module: nn.Module | None) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    return BOUNDED_OUTPUTS.get(type(module))


def image_range(model: nn.Module | None, intact: Any) -> tuple[float, float]:
    """The value scale ``(lo, hi)`` of an image model's outputs: black at ``lo``, white at ``hi`` (in each channel of
    an RGB output: :func:`msa_core.live_views.image_pixels`).

    ``intact``: the intact outputs ``(n_images, [C,] H, W)``. When the last module registered in ``model`` is one
    of :data:`BOUNDED_OUTPUTS` (or a Hardtanh) and ``intact`` lies within its bounds, those bounds (a
    generator's Tanh: [-1, 1] drawn as [0, 1], the usual way to view its images; random weights then give a
    mid-grey image, as they should). Otherwise the intact output's own range (a constant image: ``lo .. lo + 1``).
    """
    values = torch.as_tensor(intact).detach().double()
    lo, hi = float(values.min()), float(values.max())
    last = None
    for module in (model.modules() if model is not None else ()):
        last = module
    bounds = _bounds(last)
    if bounds is not None and bounds[0] <= lo and hi <= bounds[1]:
        return bounds
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
