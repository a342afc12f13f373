"""Per-unit thumbnails and totals of a run's Shapley modes, computed chunk by chunk over units.

The Modes page draws its unit grid from these instead of the whole ``values`` array, so a result that
lives on disk (:class:`~msa_core.ondisk.ChunkedArray`) opens without being loaded. For an on-disk
result they are cached next to its stored arrays (``arrays/<id>/thumbnails-<side>.npy``,
``totals.npy``, ``efficiency_gap.npy``): written once, read on every later open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .ondisk import DEFAULT_CHUNK_BYTES, is_on_disk

__all__ = ["block_mean", "mode_thumbnails", "run_efficiency_gap", "run_mean_contributions", "run_thumbnails",
           "run_totals"]

_RANGE_BYTES = 16 * 2**20  # rows read at a time: bounded whatever the number of units


def _edges(length: int, max_side: int) -> np.ndarray:
    """Start index of each of ``min(length, max_side)`` near-equal blocks of an axis of ``length``."""
    n_blocks = max(1, min(length, max_side))
    return np.floor(np.arange(n_blocks) * length / n_blocks).astype(np.int64)


def block_mean(images: np.ndarray, max_side: int) -> np.ndarray:
    """Block-average ``(n, H, W)`` to ``(n, h, w)`` with ``h <= max_side``, ``w <= max_side`` (exact means
    over near-equal blocks; axes already short enough are kept)."""
    out = images
    for axis in (1, 2):
        length = out.shape[axis]
        if length <= max_side:
            continue
        starts = _edges(length, max_side)
        counts = np.diff(np.append(starts, length))
        sums = np.add.reduceat(out, starts, axis=axis)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        out = sums / counts.reshape(shape)
    return out


def mode_thumbnails(modes: np.ndarray, max_side: int = 32) -> np.ndarray:
    """Thumbnails of a block of modes ``(n, *output_shape)``: float32 ``(n, h, w)``.

    Image modes (last two axes >= 4): mean over every leading axis (inputs, channels), then
    :func:`block_mean` to at most ``max_side`` a side. Other modes: the mode flattened to ``(n, 1, F)``,
    block-averaged to at most ``max_side ** 2`` outputs when longer.
    """
    from .figures import is_image_output  # the one rule for what is an image

    modes = np.asarray(modes, dtype=np.float64)
    n, shape = modes.shape[0], modes.shape[1:]
    if is_image_output(shape):
        images = modes.reshape(n, -1, *shape[-2:]).mean(1)
        return block_mean(images, max_side).astype(np.float32)
    flat = modes.reshape(n, 1, -1)
    return block_mean(flat, max_side * max_side).astype(np.float32)


def _cache_dir(result: Any) -> Path | None:
    """``arrays/<id>`` of a stored on-disk result (None for in-memory results and run scratch)."""
    if not result.on_disk:
        return None
    folder = Path(result.values.path).parent
    return None if folder.parent.name == "scratch" or folder.name == "scratch" else folder


def _ranges(values: Any) -> list[tuple[int, int]]:
    if is_on_disk(values):
        return list(values.ranges(min(_RANGE_BYTES, DEFAULT_CHUNK_BYTES)))
    return [(0, int(values.shape[0]))]


def _rows(values: Any, start: int, stop: int) -> np.ndarray:
    if is_on_disk(values):
        return values.read_range(start, stop)
    return values[start:stop].detach().cpu().numpy()


def _summarise(result: Any, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thumbnails, totals and the efficiency gap in one pass over the units, a range of rows at a time."""
    thumbs, totals = [], []
    mode_sum = np.zeros(result.output_shape, dtype=np.float64)
    for start, stop in _ranges(result.values):
        rows = _rows(result.values, start, stop)
        thumbs.append(mode_thumbnails(rows, max_side))
        totals.append(rows.reshape(stop - start, -1).sum(1, dtype=np.float64))
        mode_sum += rows.sum(0, dtype=np.float64)
    target = (result.intact - result.empty).detach().cpu().numpy().astype(np.float64)
    gap = np.asarray(float(np.abs(mode_sum - target).max()) if mode_sum.size else 0.0)
    return np.concatenate(thumbs), np.concatenate(totals), gap


def _cached(result: Any, max_side: int, which: int) -> np.ndarray:
    folder = _cache_dir(result)
    names = (f"thumbnails-{int(max_side)}.npy", "totals.npy", "efficiency_gap.npy")
    paths = [folder / name for name in names] if folder is not None else None
    if paths is not None and paths[which].exists():
        return np.load(paths[which], allow_pickle=False)
    computed = _summarise(result, max_side)
    if paths is not None:
        for path, array in zip(paths, computed):
            _save_once(path, array)
    return computed[which]


def run_thumbnails(result: Any, max_side: int = 32) -> np.ndarray:
    """Each unit's thumbnail (see :func:`mode_thumbnails`): float32 ``(n_units, h, w)``.

    On-disk results are read a range of units at a time (never the whole array) and the thumbnails
    are cached in ``arrays/<id>/thumbnails-<max_side>.npy`` (written once, then read).
    """
    return _cached(result, max_side, 0)


def run_totals(result: Any, max_side: int = 32) -> np.ndarray:
    """Each unit's mode summed over all outputs: float64 ``(n_units,)``, computed in the same pass as the
    thumbnails and cached in ``arrays/<id>/totals.npy``."""
    return _cached(result, max_side, 1)


def run_efficiency_gap(result: Any, max_side: int = 32) -> float:
    """:meth:`ShapleyResult.efficiency_gap` from the same pass as the thumbnails, cached in
    ``arrays/<id>/efficiency_gap.npy``."""
    return float(_cached(result, max_side, 2))


def run_mean_contributions(result: Any, max_side: int = 32) -> np.ndarray:
    """:func:`msa_core.analysis.mean_contributions` of a result, float64 ``(n_units,)``: each unit's mode averaged
    over outputs. An on-disk result is not loaded: its cached totals (:func:`run_totals`) over the output size."""
    if not result.on_disk:
        from .analysis import mean_contributions

        return mean_contributions(result)
    return run_totals(result, max_side) / max(1, int(np.prod(result.output_shape)))


def _save_once(path: Path, array: np.ndarray) -> None:
    """Write atomically (a temporary name, then a rename) so a concurrent reader never sees half a file."""
    partial = path.with_name(path.stem + ".partial.npy")
    np.save(partial, array, allow_pickle=False)
    partial.replace(path)
