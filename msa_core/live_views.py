"""The editor's live views: plain figure dicts and PNG images, cheap to rebuild on every click.

The click-to-lesion editor redraws its grid and output after every click, and every millisecond of
Python there is latency. Plotly figures built from ``go`` objects are validated property by property
(tens of milliseconds for the unit grid, hundreds for a grid of 24 image heatmaps), so the editor builds
its views here instead: the unit grid is a Plotly figure *dict* (validated once by ``st.plotly_chart``;
Plotly, because its click events reach the server at once, while ``st.echarts_chart`` debounces
selections by 150 ms), score bars are Apache ECharts option dicts (plain JSON, no validation), and image
outputs are one PNG. No Streamlit here, so every view is unit-testable.

Conventions as in :mod:`msa_core.figures`: Shapley values on a diverging scale centred at 0 (blue < 0 <
red), images in grey, three-channel images (an RGB generator's) in colour with their differences as colour shifts
(:func:`msa_core.figure_data.colour_shift`, as on the Modes page).
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np

from .figure_data import as_numpy, colour_shift, is_rgb_output

__all__ = [
    "DIVERGING_COLOURS",
    "PLOTLY_DIVERGING",
    "unit_grid_figure",
    "score_comparison_option",
    "token_probability_option",
    "image_comparison_png",
    "image_pixels",
    "display_values",
    "diverging_rgb",
    "GRID_COLOUR_TITLE",
]

DIVERGING_COLOURS = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"]
"""Blue (negative) to red (positive) through white at 0: ColorBrewer RdBu, reversed."""

PLOTLY_DIVERGING = [[k / (len(DIVERGING_COLOURS) - 1), c] for k, c in enumerate(DIVERGING_COLOURS)]
"""The same scale as a Plotly colour scale (position, colour)."""

GRID_COLOUR_TITLE = "Shapley<br>value"
"""The unit grid's default colour-bar title (HTML line breaks)."""

INTACT_COLOUR = "#95a5a6"
EDITED_COLOUR = "#c0392b"


def unit_grid_figure(
    values: Any,
    lesioned: Sequence[int] = (),
    *,
    unit_labels: Sequence[str] | None = None,
    n_cols: int | None = None,
    unit_indices: Sequence[int] | None = None,
    limit: float | None = None,
    colour_title: str = GRID_COLOUR_TITLE,
) -> dict[str, Any]:
    """The units as a clickable grid of cells coloured by Shapley value; lesioned cells crossed out.

    A Plotly *scatter* (a heatmap returns no click events in Streamlit) as a plain figure dict: the
    first trace holds one square marker per unit with ``customdata`` = unit index and the unit's name
    on hover; a lesioned unit is a crossed square with a black edge. Two point-less traces after it
    make the legend (intact, lesioned) and the colour bar says what the colour is. Plain lists rather than ``go`` objects: ``st.plotly_chart`` validates the dict once,
    instead of once more after Plotly's object-by-object construction.

    Args:
        values: ``(n_units,)`` or ``(n_units, *output)`` Shapley values (a mode is coloured by its sum);
            all zeros (no run) draws every cell white without a colour bar.
        lesioned: indices of the lesioned units.
        unit_labels: ``n_units`` names for the hover text (default ``"0"``, ``"1"``, ...).
        n_cols: columns of the grid (default: about twice as many columns as rows, at most 20).
        unit_indices: the units' indices in the game when the grid shows a subset of them (``n_units`` ints,
            the points' ``customdata``, matched against ``lesioned``; default ``0..n_units-1``).
        limit: the colour scale's end (default: the largest |value| shown; pass the game's so that pages
            of one game share one scale).
        colour_title: the colour bar's title (HTML line breaks; default :data:`GRID_COLOUR_TITLE`).

    Returns:
        A figure dict for ``st.plotly_chart(..., on_select=..., selection_mode="points")``.
    """
    v = as_numpy(values).astype(np.float64)
    v = v.reshape(v.shape[0], -1).sum(1) if v.ndim > 1 else v.reshape(-1)
    n = int(v.size)
    if n < 1:
        raise ValueError("the grid needs at least one unit")
    indices = [int(i) for i in unit_indices] if unit_indices is not None else list(range(n))
    if len(indices) != n:
        raise ValueError(f"{len(indices)} unit indices for {n} units")
    labels = [str(label) for label in unit_labels] if unit_labels is not None else [str(i) for i in indices]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} unit labels for {n} units")
    n_cols = n_cols or max(1, min(20, math.ceil(math.sqrt(n * 2))))
    n_rows = math.ceil(n / n_cols)
    xs = [i % n_cols for i in range(n)]
    ys = [i // n_cols for i in range(n)]
    limit = float(limit) if limit is not None else float(np.abs(v).max())
    limit = limit if limit > 0 else 1.0
    cell = 34 if n_cols <= 12 else 28
    off = {int(i) for i in lesioned}
    # lesioned units: a crossed, black-edged square; one trace whatever the lesions, so point indices stay put
    symbols = ["square-x" if i in off else "square" for i in indices]
    edges = ["black" if i in off else "white" for i in indices]
    widths = [2 if i in off else 1 for i in indices]
    traces: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "markers", "name": "units", "x": xs, "y": ys, "customdata": indices,
        "text": labels, "showlegend": False,
        "hovertemplate": "unit %{text}<br>" + ("Shapley value %{marker.color:.4g}<br>" if np.any(v) else "")
                         + "click to toggle<extra></extra>",
        "marker": {"symbol": symbols, "size": cell, "color": [float(x) for x in v], "colorscale": PLOTLY_DIVERGING,
                   "cmin": -limit, "cmax": limit, "line": {"width": widths, "color": edges},
                   "colorbar": {"title": {"text": colour_title, "side": "top"}, "thickness": 10},
                   "showscale": bool(np.any(v))},
        # a click selects a point; keep every cell at full opacity whatever is selected
        "selected": {"marker": {"opacity": 1}}, "unselected": {"marker": {"opacity": 1}},
    }]
    for name, symbol, edge in (("intact unit", "square", "#bbbbbb"), ("lesioned unit (click to restore)", "square-x", "black")):
        traces.append({"type": "scatter", "mode": "markers", "name": name, "x": [None], "y": [None],
                       "hoverinfo": "skip", "marker": {"symbol": symbol, "size": 14, "color": "white",
                                                       "line": {"width": 2, "color": edge}}})
    return {
        "data": traces,
        "layout": {
            "height": n_rows * (cell + 6) + 70, "margin": {"l": 5, "r": 5, "t": 35, "b": 5}, "showlegend": True,
            "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "itemclick": False,
                       "itemdoubleclick": False},
            "clickmode": "event+select", "dragmode": False, "plot_bgcolor": "white",
            "xaxis": {"visible": False, "range": [-0.6, n_cols - 0.4], "fixedrange": True},
            "yaxis": {"visible": False, "range": [n_rows - 0.4, -0.6], "fixedrange": True},
        },
    }


def _bars_option(categories: list[str], series: list[tuple[str, np.ndarray, str]], *, title: str, y_title: str,
                 y_max: float | None = None, x_title: str = "") -> dict[str, Any]:
    return {
        "animation": False,
        "title": {"text": title, "textStyle": {"fontSize": 14}},
        "legend": {"right": 10, "top": 0},
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 50, "right": 10, "top": 40, "bottom": 45 if x_title else 30, "containLabel": True},
        "xAxis": {"type": "category", "data": categories, "axisLabel": {"interval": 0, "hideOverlap": True},
                  "name": x_title, "nameLocation": "middle", "nameGap": 28},
        "yAxis": {"type": "value", "name": y_title, "max": y_max},
        "series": [{"type": "bar", "name": name, "data": [round(float(x), 6) for x in values],
                    "itemStyle": {"color": colour}} for name, values, colour in series],
    }


def score_comparison_option(intact: Any, edited: Any, *, labels: Sequence[str] | None = None, title: str = "",
                            y_title: str = "score", x_title: str = "") -> dict[str, Any]:
    """ECharts grouped bars of a vector score (per-class accuracy, per-language score), intact vs edited.

    ``intact``, ``edited``: ``(k,)`` (or any shape with ``k`` elements); ``labels``: ``k`` names (repeated
    names are numbered, see :func:`msa_core.figures.output_names`); ``x_title``: what they are ("digit").
    """
    from .figures import output_names

    a, b = as_numpy(intact).reshape(-1), as_numpy(edited).reshape(-1)
    return _bars_option(output_names(labels, a.size), [("intact", a, INTACT_COLOUR), ("edited", b, EDITED_COLOUR)],
                        title=title, y_title=y_title, x_title=x_title)


def token_probability_option(tokens: Sequence[str], intact: Any, edited: Any, *, title: str = "") -> dict[str, Any]:
    """ECharts grouped bars: the probability of each next token of one word, intact vs edited.

    ``tokens``: ``t`` token strings; ``intact``, ``edited``: ``(t,)`` probabilities.
    """
    a, b = as_numpy(intact).reshape(-1), as_numpy(edited).reshape(-1)
    x = [f"{k}:{token}" for k, token in enumerate(tokens)]
    return _bars_option(x, [("intact", a, INTACT_COLOUR), ("edited", b, EDITED_COLOUR)], title=title,
                        y_title="p(token)", y_max=1.0, x_title="position:token")


def diverging_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    """``(..., 3)`` uint8 colours of ``values`` on :data:`DIVERGING_COLOURS` over ``[-limit, limit]``."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in DIVERGING_COLOURS], dtype=np.float64)
    position = (np.clip(values / (limit or 1.0), -1, 1) + 1) / 2 * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = (position - low)[..., None]
    return np.round(stops[low] * (1 - frac) + stops[low + 1] * frac).astype(np.uint8)


def display_values(images: Any) -> np.ndarray:
    """The float64 values drawn of images ``(n_images, ..., H, W)``: ``(n_images, 3, H, W)`` for RGB ones
    (:func:`msa_core.figure_data.is_rgb_output`; axes between the inputs and the channels averaged), else
    ``(n_images, H, W)``, the channels averaged (grey)."""
    a = as_numpy(images).astype(np.float64)
    if is_rgb_output(a.shape):
        return a.reshape(a.shape[0], -1, *a.shape[-3:]).mean(1)
    return a.reshape(a.shape[0], -1, *a.shape[-2:]).mean(1)


def _pixels(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo or 1.0
    v = (np.clip((a - lo) / span, 0, 1) * 255).round().astype(np.uint8)
    return v.transpose(0, 2, 3, 1) if v.ndim == 4 else np.repeat(v[..., None], 3, axis=-1)


def image_pixels(images: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(n_images, H, W, 3)`` uint8 colours of images ``(n_images, [C,] H, W)`` on ``value_range``.

    Three channels (:func:`msa_core.figure_data.is_rgb_output`: ``(n, ..., 3, H, W)``, e.g. an RGB generator's)
    are drawn as RGB, each channel on the same ``(lo, hi)``; any other output is grey, its channels averaged.
    ``lo`` maps to 0, ``hi`` to 255, values beyond them clip; ``value_range`` defaults to the images' own range.
    """
    a = display_values(images)
    lo, hi = value_range or (float(a.min()), float(a.max()))
    return _pixels(a, lo, hi)


def image_comparison_png(intact: Any, edited: Any, *, n_show: int = 8, scale: int = 4, gap: int = 4,
                         value_range: tuple[float, float] | None = None) -> tuple[bytes, float]:
    """One PNG: rows intact / edited / difference (edited - intact) for the first ``n_show`` images.

    Args:
        intact, edited: ``(n_images, [C,] H, W)`` model outputs of one shape: three channels are drawn in colour
            (:func:`image_pixels`), other outputs in grey (channels averaged).
        n_show: images per row.
        scale: each pixel drawn as a ``scale x scale`` block (crisp, no smoothing).
        gap: white pixels between images.
        value_range: the scale ``(lo, hi)`` of both image rows, black to white in each channel (default: the
            range of both).

    Returns:
        ``(png_bytes, limit)``: the image, and the largest |difference| (the difference scale's end). Grey
        outputs' difference is on :data:`DIVERGING_COLOURS` (white: no change); RGB outputs' is each channel's
        signed difference as a colour shift (:func:`msa_core.figure_data.colour_shift`, as the Modes page draws
        RGB modes: mid-grey where nothing changed, a channel brighter where it rose, darker where it fell), so a
        lesion that turns red into blue shows, where the channel mean would hide it.
    """
    from PIL import Image

    a, b = display_values(intact), display_values(edited)
    n = min(n_show, a.shape[0])
    lo, hi = value_range or (float(min(a.min(), b.min())), float(max(a.max(), b.max())))
    diff = b[:n] - a[:n]
    limit = float(np.abs(diff).max())
    h, w = a.shape[-2:]
    difference = (np.stack([colour_shift(d, limit) for d in diff]) if diff.ndim == 4 else diverging_rgb(diff, limit))
    rows = [_pixels(a[:n], lo, hi), _pixels(b[:n], lo, hi), difference]
    sh, sw = h * scale, w * scale
    canvas = np.full((3 * sh + 2 * gap, n * sw + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for j in range(n):
            block = np.kron(row[j], np.ones((scale, scale, 1), dtype=np.uint8))
            y, x = r * (sh + gap), j * (sw + gap)
            canvas[y:y + sh, x:x + sw] = block
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), limit
