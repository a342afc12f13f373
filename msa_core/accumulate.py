"""Streaming mean/variance accumulators that merge exactly and deterministically.

Sampling estimators reduce their samples block by block: each block of i.i.d. sample vectors is
summarised by its count, mean and sum of squared deviations (``m2``), and blocks are merged in block
order with Chan et al.'s pairwise update. Merging in a fixed order makes a run that was checkpointed
and resumed, or split over Ray workers, give bit-identical results to an uninterrupted local run.
Memory is that of one mean and one ``m2`` tensor, whatever the number of samples.

Where a whole sample does not fit in memory, :meth:`MomentAccumulator.update_rows` merges one sample
row block by row block (one Chan update with a block of one sample, the same arithmetic as
``merge``), and :class:`DiskMoments` keeps mean and ``m2`` on disk (:class:`~msa_core.ondisk.ChunkedArray`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import json
from pathlib import Path

import numpy as np
import torch

from .ondisk import ChunkedArray

__all__ = ["MomentAccumulator", "DiskMoments", "welford_rows", "moments_from_state_dict"]


def welford_rows(
    mean: torch.Tensor, m2: torch.Tensor, sample: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge one sample into rows of a running mean and ``m2`` that hold ``count`` samples.

    All three are ``(rows, *shape)`` float64; returns the new ``(mean, m2)``. The arithmetic is that
    of :meth:`MomentAccumulator.merge` with a block of one sample, so merging samples one by one
    this way equals merging blocks of one.
    """
    total = count + 1
    delta = sample - mean
    return mean + delta * (1 / total), m2 + delta**2 * (count * 1 / total)


@dataclass
class MomentAccumulator:
    """Running count, mean and sum of squared deviations of i.i.d. sample tensors.

    Attributes:
        count: number of samples merged so far.
        mean: float64 tensor ``(*sample_shape)``, or None before the first block.
        m2: float64 tensor ``(*sample_shape)``: sum of squared deviations from the mean.
    """

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

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
        :meth:`finish_sample` increments :attr:`count`. Allocates zero moments on first use.
        """
        if self.mean is None:
            self.mean = torch.zeros(shape, dtype=torch.float64, device=sample.device)
            self.m2 = torch.zeros(shape, dtype=torch.float64, device=sample.device)
        rows = rows.to(self.mean.device)
        mean, m2 = welford_rows(self.mean[rows], self.m2[rows], sample.to(self.mean.device, torch.float64), self.count)
        self.mean.index_copy_(0, rows, mean)
        self.m2.index_copy_(0, rows, m2)

    def finish_sample(self) -> None:
        """Count the sample whose rows :meth:`update_rows` merged."""
        self.count += 1

    def add(self, samples: torch.Tensor) -> "MomentAccumulator":
        """Merge a block of samples ``(k, *sample_shape)``; returns self."""
        return self.merge(MomentAccumulator.from_samples(samples))

    def variance(self) -> torch.Tensor:
        """Unbiased sample variance ``(*sample_shape)``; NaN-free (zeros) with fewer than 2 samples."""
        if self.count < 2:
            return torch.zeros_like(self.mean)
        return self.m2 / (self.count - 1)

    def stderr(self) -> torch.Tensor:
        """Standard error of the mean ``(*sample_shape)``."""
        if self.count < 2:
            return torch.zeros_like(self.mean)
        return torch.sqrt(self.variance() / self.count)

    def state_dict(self) -> dict[str, Any]:
        """A picklable-free state: numpy arrays and ints (for checkpoints and Ray transfers)."""
        return {
            "count": self.count,
            "mean": None if self.mean is None else self.mean.cpu().numpy(),
            "m2": None if self.m2 is None else self.m2.cpu().numpy(),
        }

    @staticmethod
    def from_state_dict(state: dict[str, Any], device: torch.device | str | None = None) -> "MomentAccumulator":
        """Rebuild an accumulator saved with :meth:`state_dict` (see :func:`moments_from_state_dict`
        for one that may live on disk)."""
        mean = state["mean"]
        m2 = state["m2"]
        return MomentAccumulator(
            count=int(state["count"]),
            mean=None if mean is None else torch.as_tensor(np.asarray(mean), device=device),
            m2=None if m2 is None else torch.as_tensor(np.asarray(m2), device=device),
        )


class DiskMoments:
    """Count, mean and ``m2`` of ``(n_rows, *shape)`` samples, mean and ``m2`` on disk.

    The folder holds ``mean/`` and ``m2/`` (:class:`~msa_core.ondisk.ChunkedArray`, float64) and
    ``moments.json``: the count of merged samples and a ``dirty`` flag, set while a sample is being
    merged. A checkpoint stores only the folder's path and the count; a dirty folder, or one whose
    count differs from the checkpoint's, cannot be resumed (:meth:`open` raises).
    """

    def __init__(self, path: str | Path, mean: ChunkedArray, m2: ChunkedArray, count: int = 0) -> None:
        self.path = Path(path)
        self.mean = mean
        self.m2 = m2
        self.count = int(count)

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, ...], *, chunk_bytes: int) -> "DiskMoments":
        """Zero moments of samples of ``shape`` in a new folder ``path``."""
        path = Path(path)
        mean = ChunkedArray.create(path / "mean", shape, np.float64, chunk_bytes=chunk_bytes)
        m2 = ChunkedArray.create(path / "m2", shape, np.float64, chunk_bytes=chunk_bytes)
        moments = cls(path, mean, m2, 0)
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
        return cls(path, ChunkedArray(path / "mean"), ChunkedArray(path / "m2"), count)

    def _write_meta(self, *, dirty: bool) -> None:
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
        """Merge rows ``rows`` of the next sample (``(len(rows), *row_shape)``) into the files."""
        index = rows.cpu().numpy()
        mean = torch.from_numpy(self.mean.read_rows(index))
        m2 = torch.from_numpy(self.m2.read_rows(index))
        mean, m2 = welford_rows(mean, m2, sample.cpu().to(torch.float64), self.count)
        self.mean.write_rows(index, mean)
        self.m2.write_rows(index, m2)

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
