"""Streaming mean/variance accumulators that merge exactly and deterministically.

Sampling estimators reduce their samples block by block: each block of i.i.d. sample vectors is
summarised by its count, mean and sum of squared deviations (``m2``), and blocks are merged in block
order with Chan et al.'s pairwise update. Merging in a fixed order makes a run that was checkpointed
and resumed, or split over Ray workers, give bit-identical results to an uninterrupted local run.
Memory is that of one mean and one ``m2`` tensor, whatever the number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["MomentAccumulator"]


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
        """Rebuild an accumulator saved with :meth:`state_dict`."""
        mean = state["mean"]
        m2 = state["m2"]
        return MomentAccumulator(
            count=int(state["count"]),
            mean=None if mean is None else torch.as_tensor(np.asarray(mean), device=device),
            m2=None if m2 is None else torch.as_tensor(np.asarray(m2), device=device),
        )
