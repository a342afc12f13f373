"""What the Modes page draws, for in-memory and on-disk results alike: the unit grid (from per-unit
thumbnails when the modes live on disk), one unit's detail read alone, and a readable profile of a long
vector mode. Figures come from :mod:`msa_core.figures`; no Streamlit here.

The grid depends on the run and the grid settings only, so a caller may build it once per (run, settings)
and reuse it while the user moves from unit to unit; the detail reads and draws one unit.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import figures
from .thumbnails import block_mean

__all__ = ["DETAIL_MAX_SIDE", "PROFILE_MAX_OUTPUTS", "SINGLE_PICKER_MAX_UNITS", "grid_figure", "unit_source",
           "detail_figure", "vector_profile", "display_downsampled", "unit_ranges"]

DETAIL_MAX_SIDE = 256
"""Image modes larger than this a side are block-averaged for display (a browser heatmap of 1024 x 1024
cells is slow to send and draw; the table of top outputs still reads full resolution)."""

PROFILE_MAX_OUTPUTS = 1024
"""Vector modes with more outputs are drawn as a profile plus their top outputs, not one bar an output."""

SINGLE_PICKER_MAX_UNITS = 512
"""Runs with more units pick a unit in two steps (a range, then a unit of it: :func:`unit_ranges`): a browser
re-renders a selectbox of thousands of options slowly (about 0.5 s at 4,096 units), one of ~64 at once."""


def grid_figure(result: Any, *, order: str = "total", sample: int | str = "mean", scale: str = "shared",
                max_units: int = 32, summaries: tuple[Any, Any, float] | None = None) -> go.Figure:
    """The Modes page's unit grid of an image-mode result, ``max_units`` panels in ``order``.

    Args:
        result: a ShapleyResult with image modes ``(n_units, ..., H, W)``.
        order: "total", "abs" or "index" (:func:`figures.unit_order`).
        sample: input index or "mean" (ignored for on-disk results: their thumbnails are the mean).
        summaries: ``(thumbnails (n_units, h, w), totals (n_units,), gap)`` from
            :func:`msa_core.thumbnails.run_thumbnails` etc.; required when ``result.on_disk`` (the modes are
            never read whole), unused otherwise.
    """
    if result.on_disk:
        if summaries is None:
            raise ValueError("an on-disk result's grid is drawn from its thumbnails: pass summaries")
        thumbs, totals, _ = summaries
        units = figures.unit_order(np.asarray(totals)[:, None], order)
        return figures.mode_grid(SimpleNamespace(values=thumbs, unit_labels=result.unit_labels), units=units,
                                 sample="mean", scale=scale, max_units=max_units, totals=totals)
    return figures.mode_grid(result, units=figures.unit_order(result, order), sample=sample, scale=scale,
                             max_units=max_units)


def unit_source(result: Any, unit: int) -> SimpleNamespace:
    """One unit of ``result`` as a one-unit result: ``values`` float64 ``(1, *output_shape)``, ``stderr``
    (same shape, or None) and ``unit_labels`` ``[label]``. Only that unit's row is read (on disk or not)."""
    mode = figures.as_numpy(result.mode(unit))[None]
    stderr = result.stderr[int(unit)] if result.stderr is not None else None
    return SimpleNamespace(values=mode, stderr=None if stderr is None else figures.as_numpy(stderr)[None],
                           unit_labels=[result.unit_labels[int(unit)]])


def display_downsampled(source: SimpleNamespace, max_side: int = DETAIL_MAX_SIDE) -> SimpleNamespace:
    """``source`` (from :func:`unit_source`) with image modes block-averaged to at most ``max_side`` a side
    (leading axes kept, so a chosen input still shows); vector modes and small images unchanged."""
    shape = source.values.shape[1:]
    if not figures.is_image_output(shape) or max(shape[-2:]) <= max_side:
        return source

    def shrink(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        small = block_mean(a.reshape(-1, *shape[-2:]), max_side)
        return small.reshape(1, *shape[:-2], *small.shape[-2:])

    return SimpleNamespace(values=shrink(source.values), stderr=shrink(source.stderr), unit_labels=source.unit_labels)


def _binned(flat: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start index, mean, min and max of ``n_bins`` near-equal bins of ``flat`` ``(F,)``."""
    starts = np.floor(np.arange(n_bins) * flat.size / n_bins).astype(np.int64)
    counts = np.diff(np.append(starts, flat.size))
    return (starts, np.add.reduceat(flat, starts) / counts, np.minimum.reduceat(flat, starts),
            np.maximum.reduceat(flat, starts))


def vector_profile(source: Any, unit: int = 0, *, output_labels: Sequence[str] | None = None, k: int = 20,
                   max_points: int = PROFILE_MAX_OUTPUTS, output_title: str = "output") -> go.Figure:
    """A long vector mode ``(F,)`` of unit ``unit``: its ``k`` largest-|value| outputs as bars (with standard
    errors) over a profile of the whole mode, binned to at most ``max_points`` points (bin mean as a line,
    bin min..max as a band), x = output index."""
    flat = figures.as_numpy(source.values)[unit].reshape(-1)
    stderr = getattr(source, "stderr", None)
    se = figures.as_numpy(stderr)[unit].reshape(-1) if stderr is not None else None
    names = figures.output_names(output_labels, flat.size)
    label = list(source.unit_labels)[unit]
    top = np.argsort(-np.abs(flat), kind="stable")[:k]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.22, subplot_titles=[
        f"top {len(top)} {output_title}s by |value|",
        f"profile over all {flat.size:,} {output_title}s" + (f" (mean of bins of ~{math.ceil(flat.size / max_points)})"
                                                           if flat.size > max_points else "")])
    fig.add_trace(go.Bar(x=[names[j] for j in top], y=flat[top],
                         marker_color=np.where(flat[top] >= 0, "#c0392b", "#2c7fb8"),
                         error_y=dict(type="data", array=se[top], visible=True) if se is not None else None,
                         hovertemplate="%{x}<br>phi %{y:.4g}<extra></extra>", showlegend=False), row=1, col=1)
    starts, mean, low, high = _binned(flat, min(max_points, flat.size))
    fig.add_trace(go.Scatter(x=np.concatenate([starts, starts[::-1]]), y=np.concatenate([high, low[::-1]]),
                             fill="toself", fillcolor="rgba(120,120,120,0.25)", line=dict(width=0),
                             name="bin min..max", hoverinfo="skip"), row=2, col=1)
    fig.add_trace(go.Scatter(x=starts, y=mean, mode="lines", line=dict(color="#34495e", width=1), name="bin mean",
                             hovertemplate=f"{output_title} %{{x}}<br>phi %{{y:.4g}}<extra></extra>"), row=2, col=1)
    fig.update_xaxes(type="category", row=1, col=1)
    fig.update_xaxes(title_text=f"{output_title} index", row=2, col=1)
    fig.update_yaxes(title_text="Shapley value")
    fig.update_layout(title=f"unit {label}: mode ({flat.size:,} outputs)", height=520, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0))
    return fig


def detail_figure(source: Any, unit: int = 0, *, output_labels: Sequence[str] | None = None,
                  sample: int | str = "mean", output_title: str = "output") -> go.Figure:
    """The unit detail of the Modes page: :func:`figures.unit_detail` of image modes downsampled for display
    (:func:`display_downsampled`), of short vector modes as bars, and :func:`vector_profile` of vector modes
    longer than :data:`PROFILE_MAX_OUTPUTS`. ``source``: a one-unit result from :func:`unit_source`."""
    shape = tuple(np.shape(source.values)[1:])
    if not figures.is_image_output(shape) and math.prod(shape) > PROFILE_MAX_OUTPUTS:
        return vector_profile(source, unit, output_labels=output_labels, output_title=output_title)
    return figures.unit_detail(display_downsampled(source), unit, output_labels=output_labels, sample=sample,
                               output_title=output_title)


def unit_ranges(units: Sequence[int], unit_labels: Sequence[str], *, ranked: bool,
                size: int | None = None) -> list[tuple[str, list[int]]]:
    """The ranges of a two-step unit picker: ``[(name, unit indices in page order)]``, consecutive and covering
    ``units`` (the page's order) exactly once, each at most ``size`` long (default ``max(64, ceil(sqrt(n)))``,
    so a range list and a range hold about the same few dozen options).

    ``ranked`` (units ordered by total or |total|): ranges of ranks, named ``"ranks 1-64"``. Else (index order)
    a range never spans two layers (the label before its last ``":"``) unless that would more than double the
    number of ranges (many tiny layers), named by their first and last labels, ``"net.0:0 ... net.0:63"``.
    """
    units = [int(u) for u in units]
    n = len(units)
    size = int(size or max(64, math.ceil(math.sqrt(n))))
    plain = [units[a:a + size] for a in range(0, n, size)]
    if ranked:
        return [(f"ranks {a * size + 1}-{a * size + len(chunk)}", chunk) for a, chunk in enumerate(plain)]
    layer = [str(unit_labels[u]).rsplit(":", 1)[0] for u in units]
    chunks, start = [], 0
    for k in range(1, n + 1):
        if k == n or layer[k] != layer[k - 1] or k - start == size:
            chunks.append(units[start:k])
            start = k
    if len(chunks) > 2 * len(plain):
        chunks = plain
    return [(str(unit_labels[c[0]]) if len(c) == 1 else f"{unit_labels[c[0]]} ... {unit_labels[c[-1]]}", c)
            for c in chunks]
