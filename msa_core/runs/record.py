"""One stored run (:class:`RunRecord`: spec, result loaded lazily, timings, label, params) and the
``.npz`` bytes the run store keeps (see :mod:`msa_core.runs.store`, which re-exports both classes).
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from ..result import ShapleyResult
from .spec import RunSpec

__all__ = ["RunRecord", "RunNotFound"]


class RunNotFound(KeyError):
    """No stored run matches an id (or an id prefix matches several)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else "run not found"


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npz_load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class RunRecord:
    """One stored run.

    Attributes:
        id: the run key (64 hex characters).
        spec: the :class:`RunSpec` that produced it.
        result: the :class:`~msa_core.result.ShapleyResult` (loaded lazily from the store).
        created: when it was stored (``time.time()``).
        elapsed_s: wall time of the computation (all sessions of a resumed run together).
        label: a human label.
        params: JSON-serialisable details: resolved units, objective, fingerprint, version,
            n_players, output_shape, n_evaluations, backend, resume information, ...
    """

    def __init__(
        self,
        id: str,
        spec: RunSpec,
        result: ShapleyResult | None = None,
        created: float = 0.0,
        elapsed_s: float = 0.0,
        label: str = "",
        params: dict[str, Any] | None = None,
        *,
        loader: Callable[[], ShapleyResult] | None = None,
    ) -> None:
        self.id = id
        self.spec = spec
        self._result = result
        self._loader = loader
        self.created = float(created)
        self.elapsed_s = float(elapsed_s)
        self.label = label
        self.params = dict(params or {})

    @property
    def result(self) -> ShapleyResult:
        if self._result is None:
            if self._loader is None:
                raise RunNotFound(f"run {self.id[:12]} has no result")
            self._result = self._loader()
        return self._result

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        """Everything but the arrays, as plain JSON types."""
        return {
            "id": self.id,
            "spec": self.spec.to_dict(),
            "created": self.created,
            "elapsed_s": self.elapsed_s,
            "label": self.label,
            "params": self.params,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], **kwargs: Any) -> "RunRecord":
        return cls(
            id=data["id"],
            spec=RunSpec.from_dict(data["spec"]),
            created=data.get("created", 0.0),
            elapsed_s=data.get("elapsed_s", 0.0),
            label=data.get("label", ""),
            params=data.get("params", {}),
            **kwargs,
        )

    def __repr__(self) -> str:
        p = self.params
        return (
            f"RunRecord({self.short_id} {self.spec.model} {p.get('units_text', '')} {self.spec.method} "
            f"M={self.spec.n_permutations} seed={self.spec.seed}{' ' + repr(self.label) if self.label else ''})"
        )
