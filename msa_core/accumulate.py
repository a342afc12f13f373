"""Streaming mean/variance accumulators that merge exactly and deterministically.

Sampling estimators reduce their samples block by block: each block of i.i.d. sample vectors is
summarised by its count, mean and sum of squared deviations (``m2``), and blocks are merged in block
order with Chan et al.'s pairwise update. Merging in a fixed order makes a run that was checkpointed
and resumed, or split over Ray workers, give bit-identical results to an uninterrupted local run.
Memory is that of one mean and one ``m2`` tensor, whatever the number of samples.

Where a whole sample does not fit in memory, :meth:`MomentAccumulator.update_rows` merges one sample
row block by row block (one Chan update with a block of one sample, the same arithmetic as
``merge``), and :class:`DiskMoments` keeps mean and ``m2`` on disk (:class:`~msa_core.ondisk.ChunkedArray`).

Both can keep a sample count per row (``row_counts=True``) for estimators whose rows get different
numbers of samples (the top-k bandit samples only its unresolved units): each :meth:`update_rows` then
counts the rows it merged, and variance and standard error are per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import json
from pathlib import Path

import numpy as np
import torch

from .ondisk import ChunkedArray

__all__ = ["MomentAccumulator", "DiskMoments", "welford_rows", "row_stderr", "moments_from_state_dict"]


def welford_rows(
    mean: torch.Tensor, m2: torch.Tensor, sample: torch.Tensor, count: "int | torch.Tensor"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge one sample into rows of a running mean and ``m2`` that hold ``count`` samples.

    All three are ``(rows, *shape)`` float64; ``count`` is an int, or float64 per-row counts
    broadcastable to the rows (``(rows, 1, ...)``). Returns the new ``(mean, m2)``. The arithmetic is
    that of :meth:`MomentAccumulator.merge` with a block of one sample, so merging samples one by one
    this way equals merging blocks of one (per-row counts give the same bits as an int count: both
    divisions are correctly rounded).
    """
    total = count + 1
    delta = sample - mean
    return mean + delta * (1 / total), m2 + delta**2 * (count * 1 / total)


def _row_counts(counts: Any, ndim: int, like: torch.Tensor) -> torch.Tensor:
    """Per-row counts (tensor or ndarray ``(rows,)``) as float64 ``(rows, 1, ...)`` on ``like``'s
    device, to broadcast over rows of ``ndim`` dims."""
    return torch.as_tensor(counts).to(like.device, torch.float64).reshape(-1, *([1] * (ndim - 1)))


def row_stderr(m2: Any, counts: Any) -> Any:
    """Standard error of the mean per row, ``(rows, *shape)`` (tensor or ndarray like ``m2``), from
    ``m2`` and per-row counts ``(rows,)``; zero for rows with fewer than two samples. The same
    arithmetic as the one-count :meth:`MomentAccumulator.stderr`, row by row, in torch for both (numpy's
    square root differs from torch's in the last bit, and on-disk results equal in-memory ones)."""
    if isinstance(m2, np.ndarray):
        return row_stderr(torch.from_numpy(m2), counts).numpy()
    c = _row_counts(counts, m2.ndim, m2)
    return torch.where(c >= 2, torch.sqrt(m2 / (c - 1).clamp(min=1) / c.clamp(min=1)), 0.0)


@dataclass
class MomentAccumulator:
    """Running count, mean and sum of squared deviations of i.i.d. sample tensors.

    Attributes:
        count: number of samples merged so far (with ``counts``: of :meth:`finish_sample` calls).
        mean: float64 tensor ``(*sample_shape)``, or None before the first block.
        m2: float64 tensor ``(*sample_shape)``: sum of squared deviations from the mean.
        counts: None, or int64 CPU tensor ``(sample_shape[0],)``: samples merged into each row
            (:meth:`with_row_counts`; rows are then merged with :meth:`update_rows` only).
    """

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    counts: torch.Tensor | None = None

    @staticmethod
    def with_row_counts(shape: tuple[int, ...], device: torch.device | str | None = None) -> "MomentAccumulator":
        """Zero moments of ``shape`` samples whose rows each count their own samples."""
        return MomentAccumulator(0, torch.zeros(shape, dtype=torch.float64, device=device),
                                 torch.zeros(shape, dtype=torch.float64, device=device),
                                 torch.zeros(shape[0], dtype=torch.int64))

    @staticmethod
    def from_samples(samples: torch.Tensor) -> "MomentAccumulator":
        """Summarise a block of samples ``(k, *sample_shape)`` (any float dtype) in float64."""
        samples = samples.to(torch.float64)
        k = samples.shape[0]
        mean = samples.mean(0)
        m2 = ((samples - mean) ** 2).sum(0)
        return MomentAccumulator(count=k, mean=mean, m2=m2)

    def merge(self, other: "MomentAccumulator") -> "MomentAccumulator":
        """Merge ``other`` into this accumulator in place (Chan's update) and return self."""
        if self.counts is not None or other.counts is not None:
            raise ValueError("moments with per-row counts are merged row by row (update_rows)")
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.clone(), other.m2.clone()
            return self
        other_mean = other.mean.to(self.mean.device)
        other_m2 = other.m2.to(self.m2.device)
        total = self.count + other.count
        delta = other_mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other_m2 + delta**2 * (self.count * other.count / total)
        self.count = total
        return self

    def update_rows(self, rows: torch.Tensor, sample: torch.Tensor, shape: tuple[int, ...]) -> None:
        """Merge rows ``rows`` of the next sample, ``sample`` ``(len(rows), *shape[1:])``, in place.

        Every row of ``shape`` (the full sample shape) must be updated once before
        :meth:`finish_sample` increments :attr:`count`. Allocates zero moments on first use. With
        per-row counts, ``rows`` (distinct) each get one more sample now, and other rows none.
        """
        if self.mean is None:
            self.mean = torch.zeros(shape, dtype=torch.float64, device=sample.device)
            self.m2 = torch.zeros(shape, dtype=torch.float64, device=sample.device)
        sample = sample.to(self.mean.device, torch.float64)
        every = len(rows) == len(self.mean) and bool((rows.cpu() == torch.arange(len(rows))).all())
        count = self.count if self.counts is None else _row_counts(self.counts[rows.cpu()], self.mean.ndim, self.mean)
        if every:  # all rows in order (a whole chain): no gathers, the same arithmetic
            self.mean, self.m2 = welford_rows(self.mean, self.m2, sample, count)
        else:
            rows = rows.to(self.mean.device)
            mean, m2 = welford_rows(self.mean[rows], self.m2[rows], sample, count)
            self.mean.index_copy_(0, rows, mean)
            self.m2.index_copy_(0, rows, m2)
        if self.counts is not None:
            self.counts[rows.cpu()] += 1

    def finish_sample(self) -> None:
        """Count the sample whose rows :meth:`update_rows` merged."""
        self.count += 1

    def add(self, samples: torch.Tensor) -> "MomentAccumulator":
        """Merge a block of samples ``(k, *sample_shape)``; returns self."""
        return self.merge(MomentAccumulator.from_samples(samples))

    def variance(self) -> torch.Tensor:
        """Unbiased sample variance ``(*sample_shape)``; NaN-free (zeros) with fewer than 2 samples."""
        if self.counts is not None:
            c = _row_counts(self.counts, self.m2.ndim, self.m2)
            return torch.where(c >= 2, self.m2 / (c - 1).clamp(min=1), 0.0)
        if self.count < 2:
            return torch.zeros_like(self.mean)
        return self.m2 / (self.count - 1)

    def stderr(self) -> torch.Tensor:
        """Standard error of the mean ``(*sample_shape)`` (per row with per-row counts)."""
        if self.counts is not None:
            return row_stderr(self.m2, self.counts)
        if self.count < 2:
            return torch.zeros_like(self.mean)
        return torch.sqrt(self.variance() / self.count)

    def state_dict(self) -> dict[str, Any]:
        """A picklable-free state: numpy arrays and ints (for checkpoints and Ray transfers).

        The arrays are copies: :meth:`update_rows` changes mean and ``m2`` in place, and a saved state
        must keep the values it was saved with."""
        state = {
            "count": self.count,
            "mean": None if self.mean is None else self.mean.cpu().numpy().copy(),
            "m2": None if self.m2 is None else self.m2.cpu().numpy().copy(),
        }
        if self.counts is not None:
            state["counts"] = self.counts.numpy().copy()
        return state

    @staticmethod
    def from_state_dict(state: dict[str, Any], device: torch.device | str | None = None) -> "MomentAccumulator":
        """Rebuild an accumulator saved with :meth:`state_dict` (see :func:`moments_from_state_dict`
        for one that may live on disk)."""
        mean = state["mean"]
        m2 = state["m2"]
        counts = state.get("counts")
        # copies: update_rows works in place, and the caller's state may be resumed again
        return MomentAccumulator(
            count=int(state["count"]),
            mean=None if mean is None else torch.tensor(np.asarray(mean), device=device),
            m2=None if m2 is None else torch.tensor(np.asarray(m2), device=device),
            counts=None if counts is None else torch.as_tensor(np.asarray(counts, dtype=np.int64).copy()),
        )


class DiskMoments:
    """Count, mean and ``m2`` of ``(n_rows, *shape)`` samples, mean and ``m2`` on disk.

    The folder holds ``mean/`` and ``m2/`` (:class:`~msa_core.ondisk.ChunkedArray`, float64) and
    ``moments.json``: the count of merged samples and a ``dirty`` flag, set while a sample is being
    merged. A checkpoint stores only the folder's path and the count; a dirty folder, or one whose
    count differs from the checkpoint's, cannot be resumed (:meth:`open` raises). With per-row counts
    (``row_counts=True``, see :class:`MomentAccumulator`) the folder also holds ``counts.npy``
    (int64 ``(n_rows,)``, in memory while the run goes on, written by :meth:`finish_sample`).
    """

    def __init__(self, path: str | Path, mean: ChunkedArray, m2: ChunkedArray, count: int = 0,
                 counts: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.mean = mean
        self.m2 = m2
        self.count = int(count)
        self.counts = counts

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, ...], *, chunk_bytes: int,
               row_counts: bool = False) -> "DiskMoments":
        """Zero moments of samples of ``shape`` in a new folder ``path`` (a count per row with
        ``row_counts``)."""
        path = Path(path)
        mean = ChunkedArray.create(path / "mean", shape, np.float64, chunk_bytes=chunk_bytes)
        m2 = ChunkedArray.create(path / "m2", shape, np.float64, chunk_bytes=chunk_bytes)
        moments = cls(path, mean, m2, 0, np.zeros(shape[0], dtype=np.int64) if row_counts else None)
        moments._write_meta(dirty=False)
        return moments

    @classmethod
    def open(cls, path: str | Path, count: int) -> "DiskMoments":
        """Reopen moments saved with ``count`` samples; ValueError if the folder does not match."""
        path = Path(path)
        meta_path = path / "moments.json"
        if not meta_path.exists():
            raise ValueError(f"the on-disk accumulator {path} is gone")
        meta = json.loads(meta_path.read_text())
        if meta.get("dirty") or int(meta.get("count", -1)) != int(count):
            raise ValueError(
                f"the on-disk accumulator {path} was interrupted while merging a sample "
                f"(count {meta.get('count')}, checkpoint {count}): it cannot be resumed"
            )
        counts = np.load(path / "counts.npy", allow_pickle=False) if (path / "counts.npy").exists() else None
        return cls(path, ChunkedArray(path / "mean"), ChunkedArray(path / "m2"), count, counts)

    def _write_meta(self, *, dirty: bool) -> None:
        if self.counts is not None and not dirty:  # before the clean flag: a clean folder's counts are whole
            with open(self.path / "counts.npy.partial", "wb") as handle:
                np.save(handle, self.counts, allow_pickle=False)
            (self.path / "counts.npy.partial").replace(self.path / "counts.npy")
        tmp = self.path / "moments.json.partial"
        tmp.write_text(json.dumps({"count": self.count, "dirty": dirty}))
        tmp.replace(self.path / "moments.json")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mean.shape

    def begin_sample(self) -> None:
        """Mark the folder dirty: rows are about to change."""
        self._write_meta(dirty=True)

    def update_rows(self, rows: torch.Tensor, sample: torch.Tensor, shape: tuple[int, ...] | None = None) -> None:
        """Merge rows ``rows`` of the next sample (``(len(rows), *row_shape)``) into the files (with
        per-row counts: ``rows``, distinct, each get one more sample now)."""
        index = rows.cpu().numpy()
        mean = torch.from_numpy(self.mean.read_rows(index))
        m2 = torch.from_numpy(self.m2.read_rows(index))
        count = self.count if self.counts is None else _row_counts(self.counts[index], mean.ndim, mean)
        mean, m2 = welford_rows(mean, m2, sample.cpu().to(torch.float64), count)
        self.mean.write_rows(index, mean)
        self.m2.write_rows(index, m2)
        if self.counts is not None:
            self.counts[index] += 1

    def finish_sample(self) -> None:
        """Count the merged sample and mark the folder clean."""
        self.count += 1
        self._write_meta(dirty=False)

    def finalize_stderr(self, max_bytes: int) -> ChunkedArray:
        """Turn ``m2`` into the standard error of the mean, in place, range by range; returns it.

        After this the folder no longer holds an accumulator (it is marked so and cannot be resumed).
        """
        self._write_meta(dirty=True)
        for start, stop in self.m2.ranges(max_bytes):
            m2 = self.m2.read_range(start, stop)
            if self.counts is not None:
                stderr = row_stderr(m2, self.counts[start:stop])
            else:
                stderr = np.sqrt(m2 / (self.count - 1) / self.count) if self.count >= 2 else np.zeros_like(m2)
            self.m2.write_rows(np.arange(start, stop), stderr)
        stderr = self.m2.move_to(self.path / "stderr")
        (self.path / "moments.json").unlink(missing_ok=True)
        return stderr

    def state_dict(self) -> dict[str, Any]:
        """The count and the folder: the arrays stay on disk."""
        return {"count": self.count, "path": str(self.path)}


def moments_from_state_dict(state: dict[str, Any], device: torch.device | str | None = None) -> "MomentAccumulator | DiskMoments":
    """A :class:`MomentAccumulator`, or :class:`DiskMoments` where the state names a folder."""
    if state.get("path"):
        return DiskMoments.open(state["path"], int(state["count"]))
    return MomentAccumulator.from_state_dict(state, device=device)
