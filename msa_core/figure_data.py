"""The data behind the figures and tables of :mod:`msa_core.figures` (no plotly here): unit orders, images of
modes (one per channel for RGB outputs), output names and axis titles, a unit's top outputs. All are
re-exported by :mod:`msa_core.figures`."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["as_numpy", "unit_order", "is_image_output", "is_rgb_output", "mode_image", "mode_channels",
           "colour_shift", "RGB_NAMES", "output_names", "output_axis_title", "image_axis_names", "top_outputs"]


def as_numpy(x: Any) -> np.ndarray:
    """A float64 numpy array from a tensor, array or list."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _values(result: Any) -> np.ndarray:
    return as_numpy(result.values if hasattr(result, "values") and not isinstance(result, np.ndarray) else result)


def unit_order(result: Any, order: str = "total") -> np.ndarray:
    """Unit indices: "index" (as is), "total" (largest total contribution first), "abs" (largest |total|)."""
    v = _values(result)
    totals = v.reshape(v.shape[0], -1).sum(1)
    if order == "index":
        return np.arange(v.shape[0])
    if order == "abs":
        return np.argsort(-np.abs(totals), kind="stable")
    if order == "total":
        return np.argsort(-totals, kind="stable")
    raise ValueError(f"order must be 'index', 'total' or 'abs'; got {order!r}")


def is_image_output(output_shape: Sequence[int]) -> bool:
    """True when a mode is best shown as an image: its last two axes are both at least 4 long."""
    shape = tuple(output_shape)
    return len(shape) >= 2 and shape[-1] >= 4 and shape[-2] >= 4


def mode_image(mode: Any, sample: int | str = "mean") -> np.ndarray:
    """A 2-D image of one unit's mode ``(..., H, W)``.

    ``sample``: an index into the first axis (e.g. which generated image) or "mean" (average over all
    leading axes, channels included).
    """
    m = as_numpy(mode)
    if m.ndim < 2:
        raise ValueError(f"a mode of shape {m.shape} is not an image")
    if m.ndim > 2 and sample != "mean":
        m = m[int(sample)]
    return m.reshape(-1, *m.shape[-2:]).mean(0)


def output_names(labels: Sequence[Any] | None, n_outputs: int, *, positional: bool = False) -> list[str]:
    """``n_outputs`` distinct names for the flat outputs of a game.

    Labels are used as they are when they are distinct; token outputs (``positional``) and labels that
    repeat (the two "l" of "hello") are prefixed by their position, ``"3:l"``, so no two outputs ever
    share a bar or a row. Without labels (or with the wrong number of them): ``"0"``, ``"1"``, ...
    """
    if labels is None or len(labels) != n_outputs:
        return [str(j) for j in range(n_outputs)]
    names = [str(label) for label in labels]
    if positional or len(set(names)) < len(names):
        return [f"{j}:{name}" for j, name in enumerate(names)]
    return names


def output_axis_title(kind: str | None, labels: Sequence[Any] | None = None) -> str:
    """What a game's outputs are, for an axis title: "digit", "class", "language", "position:token", ..."""
    if kind == "classes":
        digits = labels is not None and len(labels) > 0 and all(str(label).isdigit() for label in labels)
        return "digit" if digits else "class"
    return {"languages": "language", "tokens": "position:token", "image": "pixel"}.get(kind or "", "output")


def image_axis_names(n_axes: int) -> list[str]:
    """Names of the axes of an image-shaped output: ``(input, channel, row, column)`` for 4 axes,
    ``(input, row, column)`` for 3, ``(row, column)`` for 2; extra leading axes ``axis 0``, ...."""
    named = {1: ["index"], 2: ["row", "column"], 3: ["input", "row", "column"], 4: ["input", "channel", "row", "column"]}
    if n_axes <= 4:
        return named.get(n_axes, [])
    return [f"axis {a}" for a in range(n_axes - 4)] + named[4]


def _symmetric(limit: float) -> float:
    return limit if limit > 0 and math.isfinite(limit) else 1e-12

RGB_NAMES = ("red", "green", "blue")
"""The channels of a three-channel image output, in order."""


def is_rgb_output(output_shape: Sequence[int]) -> bool:
    """True when an image output has a channel axis of three (``(..., input, 3, H, W)``, at least 4 axes: with 3
    axes the first is the input, :func:`image_axis_names`), e.g. an RGB generator's images."""
    shape = tuple(output_shape)
    return len(shape) >= 4 and shape[-3] == 3 and is_image_output(shape)


def mode_channels(mode: Any, sample: int | str = "mean") -> np.ndarray:
    """The three channel images ``(3, H, W)`` of one unit's RGB mode ``(..., 3, H, W)``: input ``sample`` (an
    index into the first axis) or the mean over every leading axis ("mean"); channels are never averaged."""
    m = as_numpy(mode)
    if not is_rgb_output(m.shape):
        raise ValueError(f"a mode of shape {m.shape} has no channel axis of three")
    if sample != "mean":
        m = m[int(sample)]
    return m.reshape(-1, *m.shape[-3:]).mean(0)


def colour_shift(channels: Any, limit: float | None = None) -> np.ndarray:
    """An RGB picture ``(H, W, 3)`` uint8 of a signed three-channel mode ``(3, H, W)``: 128 (grey) where the
    unit changes nothing, brighter in a channel it raises, darker in one it lowers, ``limit`` (default the
    largest |value|) mapping to 255 / 0. How the unit shifts the colours, not only how much."""
    c = as_numpy(channels)
    limit = _symmetric(float(np.abs(c).max()) if limit is None else float(limit))
    return np.clip(np.rint(127.5 + 127.5 * c / limit), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def top_outputs(result: Any, unit: int, *, output_labels: Sequence[str] | None = None, k: int = 10,
                output_title: str = "output") -> pd.DataFrame:
    """The ``k`` outputs a unit moves most (largest |value|), with value, standard error and z-score.

    Vector outputs: one column ``output_title`` with the output's name. Image-shaped outputs: one
    column per axis (``input``, ``channel``, ``row``, ``column``; see :func:`image_axis_names`). A result
    without standard errors shows ``"-"`` in the ``stderr`` and ``z`` columns (not a blank "None").
    """
    values = _values(result)
    flat = values[unit].reshape(-1)
    stderr = getattr(result, "stderr", None)
    se = as_numpy(stderr)[unit].reshape(-1) if stderr is not None else None
    shape = values.shape[1:]
    idx = np.argsort(-np.abs(flat), kind="stable")[:k]
    if se is None:
        errors: Any = ["-"] * len(idx)
        z: Any = errors
    else:
        errors = se[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = flat[idx] / errors
    if is_image_output(shape):
        where = np.unravel_index(idx, shape)
        columns = {name: where[a].astype(int) for a, name in enumerate(image_axis_names(len(shape)))}
    else:
        names = output_names(output_labels, flat.size) if shape else ["()"]
        columns = {output_title: [names[j] for j in idx]}
    return pd.DataFrame({**columns, "value": flat[idx], "stderr": errors, "z": z})
