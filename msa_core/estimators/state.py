"""The resumable state of a run of any method, and its plain (checkpoint-safe) forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..accumulate import DiskMoments, MomentAccumulator, moments_from_state_dict
from ..result import ShapleyResult

__all__ = ["SamplingState", "flatten_state", "unflatten_state"]


def _to_plain(value: Any) -> Any:
    """Tensors to numpy arrays, recursively through dicts (checkpoint-safe: no pickled objects)."""
    if isinstance(value, torch.Tensor):  # a copy: estimators may update their tensors in place
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _from_plain(value: Any, device: torch.device | str | None) -> Any:
    if isinstance(value, np.ndarray) and value.ndim > 0 and value.dtype.kind in "biuf":
        return torch.as_tensor(value, device=device)
    if isinstance(value, np.ndarray):  # 0-d: back to a Python scalar or string
        return value.item() if value.dtype.kind in "biuf" else str(value)
    if isinstance(value, dict):
        return {k: _from_plain(v, device) for k, v in value.items()}
    return value


@dataclass
class SamplingState:
    """Resumable state of a run of any method: everything merged so far, in unit order.

    Attributes:
        next_unit: index of the first sample unit (block, round, pair) not yet merged.
        accumulator: moments of the merged samples ``(n_players, *output_shape)`` (mean-of-units methods).
        n_evaluations: evaluations spent so far (including the two endpoints).
        empty, intact: ``v(empty)`` and ``v(N)``.
        extra: the method's own running sums (regression normal equations, top-k arm statistics, ...):
            a nested dict of tensors, ints, floats and strings.
    """

    next_unit: int = 0
    accumulator: MomentAccumulator | DiskMoments = field(default_factory=MomentAccumulator)
    n_evaluations: int = 0
    empty: torch.Tensor | None = None
    intact: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """Plain numpy / int / float / str state, nested dicts allowed, for checkpoints (no pickles)."""
        return {
            "next_unit": self.next_unit,
            "accumulator": self.accumulator.state_dict(),
            "n_evaluations": self.n_evaluations,
            "empty": None if self.empty is None else self.empty.cpu().numpy(),
            "intact": None if self.intact is None else self.intact.cpu().numpy(),
            "extra": _to_plain(self.extra),
        }

    @staticmethod
    def from_state_dict(state: dict[str, Any], device: torch.device | str | None = None) -> "SamplingState":
        """Inverse of :meth:`state_dict` (``extra`` arrays come back as tensors on ``device``)."""

        def tensor(value: Any) -> torch.Tensor | None:
            return None if value is None else torch.as_tensor(np.asarray(value), device=device)

        return SamplingState(
            next_unit=int(state["next_unit"]),
            accumulator=moments_from_state_dict(state["accumulator"], device=device),
            n_evaluations=int(state["n_evaluations"]),
            empty=tensor(state.get("empty")),
            intact=tensor(state.get("intact")),
            extra=_from_plain(dict(state.get("extra") or {}), device),
        )

    def to_result(
        self, values: Any, stderr: Any, *, method: str, seed: int, elapsed_s: float, n_samples: int,
        metadata: dict[str, Any] | None = None,
    ) -> ShapleyResult:
        """A :class:`ShapleyResult` of this finished state: ``values`` and ``stderr`` ``(n_players, *output)``
        (tensors or on-disk arrays) with the state's evaluations and endpoints."""
        return ShapleyResult(
            values=values,
            stderr=stderr,
            n_evaluations=self.n_evaluations,
            intact=self.intact,
            empty=self.empty,
            method=method,
            seed=seed,
            elapsed_s=elapsed_s,
            n_samples=n_samples,
            metadata=dict(metadata or {}),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as one flat ``{"a/b/c": ndarray}`` mapping (for an ``.npz`` checkpoint)."""
        return flatten_state(self.state_dict())

    @staticmethod
    def from_arrays(arrays: Any, device: torch.device | str | None = None) -> "SamplingState":
        """Inverse of :meth:`to_arrays` (e.g. an open ``np.load`` of the checkpoint)."""
        state = unflatten_state(arrays)
        state.setdefault("accumulator", {"count": 0, "mean": None, "m2": None})
        for name in ("mean", "m2"):
            state["accumulator"].setdefault(name, None)
        return SamplingState.from_state_dict(state, device=device)


def flatten_state(state: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> ``{"a/b": ndarray}``; None values are left out, scalars become 0-d arrays."""
    flat: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_state(value, name + "/"))
        elif value is not None:
            flat[name] = np.asarray(_to_plain(value))
    return flat


def unflatten_state(arrays: Any) -> dict[str, Any]:
    """Inverse of :func:`flatten_state`: 0-d arrays back to Python ints, floats and strings."""
    state: dict[str, Any] = {}
    for name in arrays.keys() if hasattr(arrays, "keys") else arrays:
        value = np.asarray(arrays[name])
        if value.ndim == 0:
            value = value.item() if value.dtype.kind in "biuf" else str(value)
        node = state
        *parents, leaf = name.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return state
