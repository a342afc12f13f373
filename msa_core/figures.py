"""Plotly figures built from MSA results (no Streamlit here, so every figure is unit-testable).

Conventions: Shapley values use a diverging colour scale centred at 0 (blue negative, red positive);
images (model inputs and outputs) are shown in grey; every function returns a ``plotly`` Figure (or
a pandas DataFrame for tables) and never mutates its inputs.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figure_data import (RGB_NAMES, _symmetric, _values, as_numpy, colour_shift, image_axis_names, is_image_output,
                          is_rgb_output, mode_channels, mode_image, output_axis_title, output_names, top_outputs,
                          unit_order)

__all__ = [
    "DIVERGING",
    "as_numpy",
    "unit_order",
    "is_image_output",
    "is_rgb_output",
    "mode_image",
    "mode_channels",
    "colour_shift",
    "RGB_NAMES",
    "mode_grid",
    "unit_bars",
    "unit_output_heatmap",
    "unit_detail",
    "top_outputs",
    "lesion_curve_figure",
    "score_bars",
    "sample_images",
    "output_names",
    "output_axis_title",
    "image_axis_names",
]

DIVERGING = "RdBu_r"
"""Colour scale of Shapley values: blue < 0 < red (use with ``zmid=0``)."""

_MARGIN = dict(l=10, r=10, t=40, b=10)


def mode_grid(
    result: Any,
    *,
    units: Sequence[int] | None = None,
    sample: int | str = "mean",
    scale: str = "shared",
    n_cols: int = 8,
    max_units: int = 64,
    title: str | None = None,
    totals: Sequence[float] | None = None,
) -> go.Figure:
    """Grid of per-unit pixel heatmaps (image-shaped modes), diverging scale centred at 0.

    Args:
        result: a ShapleyResult (or an array ``(n_units, ..., H, W)``).
        units: which units in which order (default: by total contribution, largest first).
        sample: which input's image (index) or "mean" over inputs.
        scale: "shared" (one colour scale for all units) or "per-unit" (each unit its own range).
        n_cols: columns of the grid. max_units: at most this many panels.
        totals: each unit's total contribution ``(n_units,)`` for the titles (default: summed from the
            values; pass it when the values are thumbnails).
    """
    values = _values(result)
    labels = list(getattr(result, "unit_labels", [str(i) for i in range(values.shape[0])]))
    order = list(unit_order(values) if units is None else units)[:max_units]
    images = [mode_image(values[i], sample) for i in order]
    n_cols = max(1, min(n_cols, len(order)))
    n_rows = max(1, math.ceil(len(order) / n_cols))
    totals = values.reshape(values.shape[0], -1).sum(1) if totals is None else np.asarray(totals)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        # two short lines per tile (unit, then its total) stay readable in a grid of eight columns
        subplot_titles=[f"<b>{labels[i]}</b><br>total {totals[i]:+.3g}" for i in order],
        horizontal_spacing=0.02,
        vertical_spacing=0.32 / n_rows if n_rows > 1 else 0.05,
    )
    shared = _symmetric(max((np.abs(img).max() for img in images), default=1.0))
    for k, (unit, img) in enumerate(zip(order, images)):
        limit = shared if scale == "shared" else _symmetric(float(np.abs(img).max()))
        fig.add_trace(
            go.Heatmap(
                z=img,
                zmin=-limit,
                zmax=limit,
                zmid=0,
                colorscale=DIVERGING,
                showscale=(scale == "shared" and k == 0),
                colorbar=dict(title="phi", thickness=10),
                hovertemplate=f"{labels[unit]}<br>row %{{y}}, col %{{x}}<br>phi %{{z:.4g}}<extra></extra>",
            ),
            row=k // n_cols + 1,
            col=k % n_cols + 1,
        )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor=None)
    _square_pixels(fig, len(order))
    fig.update_annotations(font_size=11, yshift=4)
    fig.update_layout(
        title=title,
        height=max(240, 165 * n_rows + 60),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def unit_bars(
    result: Any,
    *,
    output: int | None = None,
    output_labels: Sequence[str] | None = None,
    order: str = "total",
    max_units: int = 200,
    output_title: str = "output",
) -> go.Figure:
    """Bars per unit: its total contribution (summed over outputs) or its value for one ``output``.

    With one output selected, error bars show the standard error (when the result has one).
    ``output_labels`` should be distinct (see :func:`output_names`); ``output_title`` names what the
    outputs are ("digit", "language", ...).
    """
    values = _values(result)
    n = values.shape[0]
    flat = values.reshape(n, -1)
    labels = list(getattr(result, "unit_labels", [str(i) for i in range(n)]))
    stderr = getattr(result, "stderr", None)
    se = as_numpy(stderr).reshape(n, -1) if stderr is not None else None
    if output is None:
        y = flat.sum(1)
        err = None
        name = "total contribution"
    else:
        y = flat[:, int(output)]
        err = se[:, int(output)] if se is not None else None
        name = f"{output_title} {output_labels[int(output)]}" if output_labels is not None else f"{output_title} {output}"
    idx = np.argsort(-y, kind="stable") if order == "total" else np.arange(n)
    idx = idx[:max_units]
    fig = go.Figure(
        go.Bar(
            x=[labels[i] for i in idx],
            y=y[idx],
            marker_color=np.where(y[idx] >= 0, "#c0392b", "#2c7fb8"),
            error_y=dict(type="data", array=err[idx], visible=True) if err is not None else None,
            hovertemplate="%{x}<br>phi %{y:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Shapley value per unit: {name}",
        xaxis_title="unit (layer:index)",
        yaxis_title="Shapley value",
        xaxis=dict(type="category"),
        height=340,
        margin=_MARGIN,
    )
    return fig


def unit_output_heatmap(
    result: Any,
    *,
    output_labels: Sequence[str] | None = None,
    order: str = "total",
    max_outputs: int = 64,
    output_title: str = "output",
) -> go.Figure:
    """Unit x output heatmap of the modes (the paper's digit x neuron figure), centred at 0.

    Outputs beyond ``max_outputs`` are averaged into that many bins (e.g. token positions). Every
    unit is named on the x axis (small, vertical text when there are many); ``output_title`` names the
    y axis ("digit", "language", ...).
    """
    values = _values(result)
    n = values.shape[0]
    flat = values.reshape(n, -1)
    k = flat.shape[1]
    labels = list(getattr(result, "unit_labels", [str(i) for i in range(n)]))
    if output_labels is None or len(output_labels) != k:
        output_labels = [str(j) for j in range(k)]
    if k > max_outputs:  # bin outputs so the heatmap stays readable
        edges = np.linspace(0, k, max_outputs + 1).astype(int)
        flat = np.stack([flat[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1)
        output_labels = [f"{output_labels[a]}..{output_labels[b - 1]}" for a, b in zip(edges[:-1], edges[1:])]
    idx = unit_order(values, order) if order != "index" else np.arange(n)
    z = flat[idx].T
    limit = _symmetric(float(np.abs(z).max()) if z.size else 1.0)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[labels[i] for i in idx],
            y=list(output_labels),
            zmin=-limit,
            zmax=limit,
            zmid=0,
            colorscale=DIVERGING,
            colorbar=dict(title="phi", thickness=10),
            hovertemplate=f"unit %{{x}}<br>{output_title} %{{y}}<br>phi %{{z:.4g}}<extra></extra>",
        )
    )
    many = n > 40
    fig.update_layout(
        title=f"Shapley modes: {output_title} x unit",
        xaxis=dict(title="unit (layer:index)", type="category", tickangle=-90 if many else None,
                   tickfont=dict(size=8 if many else 11), tickmode="array", tickvals=[labels[i] for i in idx]),
        yaxis=dict(title=output_title, type="category"),
        height=max(260, 22 * z.shape[0] + (200 if many else 120)),
        margin=_MARGIN,
    )
    return fig


def unit_detail(
    result: Any,
    unit: int,
    *,
    output_labels: Sequence[str] | None = None,
    sample: int | str = "mean",
    output_title: str = "output",
) -> go.Figure:
    """One unit's mode and its standard error: two heatmaps for images (three-channel images: one signed heatmap
    per channel and their colour shift, :func:`_rgb_detail`), bars with error bars otherwise."""
    values = _values(result)
    mode = values[unit]
    labels = list(getattr(result, "unit_labels", [str(i) for i in range(values.shape[0])]))
    stderr = getattr(result, "stderr", None)
    se = as_numpy(stderr)[unit] if stderr is not None else None
    where = "mean over inputs" if sample == "mean" or mode.ndim <= 2 else f"input {sample}"
    if is_rgb_output(mode.shape):
        return _rgb_detail(mode, se, sample, f"unit {labels[unit]} ({where})")
    if is_image_output(mode.shape):
        img = mode_image(mode, sample)
        limit = _symmetric(float(np.abs(img).max()))
        fig = make_subplots(rows=1, cols=2, subplot_titles=["mode", "standard error"], horizontal_spacing=0.12)
        fig.add_trace(
            go.Heatmap(z=img, zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING,
                       colorbar=dict(x=0.44, thickness=10, title="phi"),
                       hovertemplate="row %{y}, column %{x}<br>phi %{z:.4g}<extra></extra>"),
            row=1, col=1,
        )
        if se is not None:
            fig.add_trace(
                go.Heatmap(z=mode_image(se, sample), colorscale="Greys", colorbar=dict(thickness=10, title="se")),
                row=1, col=2,
            )
        fig.update_yaxes(autorange="reversed", showticklabels=False)
        fig.update_xaxes(showticklabels=False)
        fig.update_layout(title=f"unit {labels[unit]} ({where})", height=360, margin=_MARGIN)
        return fig
    flat = mode.reshape(-1)
    err = se.reshape(-1) if se is not None else None
    x = list(output_labels) if output_labels is not None and len(output_labels) == flat.size else [str(j) for j in range(flat.size)]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=flat,
            marker_color=np.where(flat >= 0, "#c0392b", "#2c7fb8"),
            error_y=dict(type="data", array=err, visible=True) if err is not None else None,
            hovertemplate="%{x}<br>phi %{y:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"unit {labels[unit]}: mode with standard errors",
        xaxis=dict(title=output_title, type="category"),
        yaxis_title="Shapley value",
        height=340,
        margin=_MARGIN,
    )
    return fig


def _rgb_detail(mode: np.ndarray, se: np.ndarray | None, sample: int | str, title: str) -> go.Figure:
    """A three-channel mode ``(..., 3, H, W)``: a signed heatmap per channel on one shared diverging scale (which
    channel the unit raises or lowers where, comparable across channels), the colour shift they make together
    (:func:`colour_shift`: grey = no change) and the standard error averaged over channels."""
    channels = mode_channels(mode, sample)
    limit = _symmetric(float(np.abs(channels).max()))
    fig = make_subplots(rows=2, cols=3, horizontal_spacing=0.06, vertical_spacing=0.12,
                        subplot_titles=[f"{name} channel" for name in RGB_NAMES]
                        + ["colour shift", "standard error", ""])  # short: a panel is a third of the detail
    for c, name in enumerate(RGB_NAMES):
        fig.add_trace(go.Heatmap(z=channels[c], zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING,
                                 showscale=c == 0, colorbar=dict(thickness=10, title="phi", len=0.45, y=0.78),
                                 hovertemplate=f"{name}<br>row %{{y}}, column %{{x}}<br>phi %{{z:.4g}}<extra></extra>"),
                      row=1, col=c + 1)
    fig.add_trace(go.Image(z=colour_shift(channels, limit), hoverinfo="skip"), row=2, col=1)
    if se is not None:
        fig.add_trace(go.Heatmap(z=mode_image(se, sample), colorscale="Greys",
                                 colorbar=dict(thickness=10, title="se", len=0.45, y=0.22, x=0.64)), row=2, col=2)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    _square_pixels(fig, 5)
    # a taller top margin: the subplot titles of the first row sit just under the figure's title
    fig.update_layout(title=title, height=580, margin={**_MARGIN, "t": 70})
    return fig


def lesion_curve_figure(curves: Any, *, y_title: str = "performance", title: str = "Lesion curves") -> go.Figure:
    """Lesion curves: deterministic orders as lines, random orders as their mean with a shaded band.

    ``curves``: a mapping (or an object with these attributes) with keys ``removed``, ``curves``
    (name -> values), ``random_mean``, ``random_low``, ``random_high``, ``n_random`` and optionally
    ``random_name`` (the legend entry of the random mean, e.g. with its AUC). The legend sits below the
    axes, never over the data.
    """
    get = curves.get if isinstance(curves, dict) else (lambda key, default=None: getattr(curves, key, default))
    x = np.asarray(get("removed"))
    n_random = int(get("n_random", 0) or 0)
    fig = go.Figure()
    if n_random:
        high, low = np.asarray(get("random_high")), np.asarray(get("random_low"))
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([high, low[::-1]]),
                                 fill="toself", fillcolor="rgba(120,120,120,0.2)", line=dict(width=0),
                                 name=f"random orders (95% band, {n_random})", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=np.asarray(get("random_mean")),
                                 name=get("random_name", None) or "random orders (mean)",
                                 line=dict(color="grey", dash="dash")))
    palette = ["#c0392b", "#2c7fb8", "#27ae60", "#8e44ad", "#e67e22"]
    for k, (name, y) in enumerate(dict(get("curves")).items()):
        fig.add_trace(go.Scatter(x=x, y=np.asarray(y), name=name, mode="lines+markers", marker_size=4,
                                 line=dict(color=palette[k % len(palette)])))
    ys = np.concatenate([np.asarray(y, dtype=np.float64).reshape(-1) for y in dict(get("curves")).values()]
                        + ([np.asarray(get("random_mean"), dtype=np.float64)] if n_random else []) or [np.zeros(1)])
    if ys.size and float(ys.max() - ys.min()) <= 1e-9 * (1.0 + float(np.abs(ys).max())):
        # a constant objective (e.g. mean class probability, always 1 / n_classes): no axis of rounding noise
        middle = float(ys.mean())
        fig.update_yaxes(range=[middle - 0.05 * (abs(middle) or 1.0), middle + 0.05 * (abs(middle) or 1.0)])
    fig.update_layout(title=title, xaxis_title="units removed", yaxis_title=y_title, height=520,
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.15, xanchor="left", x=0))
    return fig


def score_bars(values: Any, *, labels: Sequence[str] | None = None, title: str = "", y_title: str = "score") -> go.Figure:
    """Bars of one vector score (e.g. the intact model's per-class accuracy)."""
    a = as_numpy(values).reshape(-1)
    x = list(labels) if labels is not None and len(labels) == a.size else [str(j) for j in range(a.size)]
    fig = go.Figure(go.Bar(x=x, y=a, marker_color="#7f8c8d"))
    fig.update_layout(title=title, yaxis_title=y_title, xaxis=dict(type="category"), height=280, margin=_MARGIN)
    return fig


def _grey(img: np.ndarray, lo: float, hi: float, showscale: bool = False) -> go.Heatmap:
    return go.Heatmap(z=img, zmin=lo, zmax=hi, colorscale="gray", showscale=showscale,
                      hovertemplate="%{z:.3f}<extra></extra>")


def sample_images(images: Any, *, titles: Sequence[str] | None = None, n_cols: int = 8, n_show: int = 16,
                  value_range: tuple[float, float] | None = None) -> go.Figure:
    """A grid of input or output images ``(k, [C,] H, W)``: three channels in colour (an RGB generator's), any
    other in grey (channels averaged), black to white over ``value_range`` ``(lo, hi)`` (default: the images'
    joint range; the Model page passes :func:`msa_core.editor_display.image_range`, a Tanh generator's [-1, 1])."""
    from .live_views import display_values, image_pixels

    a = display_values(as_numpy(images)[:n_show])
    n = a.shape[0]
    n_cols = max(1, min(n_cols, n))
    n_rows = math.ceil(n / n_cols)
    fig = make_subplots(rows=n_rows, cols=n_cols, horizontal_spacing=0.01, vertical_spacing=0.06,
                        subplot_titles=list(titles[:n]) if titles is not None else None)
    lo, hi = value_range or (float(a.min()), float(a.max()))
    rgb = image_pixels(a, (lo, hi)) if a.ndim == 4 else None
    for k in range(n):
        trace = go.Image(z=rgb[k], hoverinfo="skip") if rgb is not None else _grey(a[k], lo, hi)
        fig.add_trace(trace, row=k // n_cols + 1, col=k % n_cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    _square_pixels(fig, n)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=110 * n_rows + 30, margin=dict(l=5, r=5, t=25, b=5))
    return fig


def _square_pixels(fig: go.Figure, n_panels: int) -> None:
    """Keep image panels square (each y axis anchored to its x axis)."""
    for i in range(1, n_panels + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", constrain="domain")
        fig.layout[f"xaxis{suffix}"].update(constrain="domain")
