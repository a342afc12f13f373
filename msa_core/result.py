"""The result of an MSA run: Shapley modes with their standard errors.

``values`` and ``stderr`` are torch tensors, or, for results too large for memory,
:class:`~msa_core.ondisk.ChunkedArray` s on disk: ``result.values[i]`` is unit ``i``'s mode as a
tensor either way, read without loading the other units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .ondisk import ChunkedArray, is_on_disk

__all__ = ["ShapleyResult"]


def _dense(array: Any) -> torch.Tensor:
    return array.to_tensor() if is_on_disk(array) else array


@dataclass
class ShapleyResult:
    """Shapley values (modes) of ``n_players`` units for a game with output shape ``output_shape``.

    Attributes:
        values: float tensor ``(n_players, *output_shape)``, or an on-disk ``ChunkedArray`` of that
            shape: unit i's Shapley mode is ``values[i]`` (a tensor) either way.
        stderr: tensor of the same shape (standard error of each estimate), or None for exact values.
        n_evaluations: number of game evaluations (coalitions) actually computed.
        intact: ``v(N)``, tensor ``(*output_shape)``: the game with every unit intact.
        empty: ``v(empty)``, tensor ``(*output_shape)``: the game with every unit lesioned.
        method: the estimator's name ("exact", "permutation", ...).
        seed: the seed used (None for exact).
        elapsed_s: wall time of the estimation in seconds.
        unit_labels: one label per player (e.g. "1:37" for unit 37 of layer "1").
        n_samples: number of i.i.d. samples behind the estimate (permutations, pairs, blocks).
        metadata: free-form JSON-serialisable extras (model, layer, objective, ...).
    """

    values: torch.Tensor | ChunkedArray
    stderr: torch.Tensor | ChunkedArray | None
    n_evaluations: int
    intact: torch.Tensor
    empty: torch.Tensor
    method: str
    seed: int | None = None
    elapsed_s: float = 0.0
    unit_labels: list[str] = field(default_factory=list)
    n_samples: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.unit_labels:
            self.unit_labels = [str(i) for i in range(self.values.shape[0])]
        if len(self.unit_labels) != self.values.shape[0]:
            raise ValueError(
                f"unit_labels has {len(self.unit_labels)} entries but values has {self.values.shape[0]} players"
            )

    @property
    def n_players(self) -> int:
        """Number of players (units)."""
        return int(self.values.shape[0])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one Shapley mode (the game's output shape)."""
        return tuple(self.values.shape[1:])

    @property
    def on_disk(self) -> bool:
        """True where ``values`` live on disk (a ``ChunkedArray``)."""
        return is_on_disk(self.values)

    def mode(self, unit: int) -> torch.Tensor:
        """Unit ``unit``'s Shapley mode ``(*output_shape)`` (reads one row of an on-disk result)."""
        return self.values[int(unit)]

    def total_contribution(self) -> torch.Tensor:
        """Each unit's mode summed over all outputs: tensor ``(n_players,)``."""
        if self.on_disk:
            sums = [torch.from_numpy(self.values.read_range(a, b).reshape(b - a, -1).sum(1))
                    for a, b in self.values.ranges()]
            return torch.cat(sums)
        return self.values.reshape(self.n_players, -1).sum(1)

    def efficiency_gap(self) -> float:
        """Largest ``|sum_i values[i] - (intact - empty)|``: zero up to float precision."""
        if self.on_disk:
            total = torch.zeros(self.output_shape, dtype=torch.float64)
            for a, b in self.values.ranges():
                total += torch.from_numpy(self.values.read_range(a, b).astype(np.float64).sum(0))
        else:
            total = self.values.sum(0)
        return float((total - (self.intact - self.empty)).abs().max())

    # ------------------------------------------------------------------ persistence
    def to_arrays(self, modes: bool = True) -> dict[str, np.ndarray]:
        """Plain numpy arrays (no objects) of everything in the result, as written by :meth:`save`
        (``modes=False``: all but ``values`` and ``stderr``, e.g. for a result kept on disk)."""
        meta = {
            "method": self.method,
            "seed": self.seed,
            "elapsed_s": self.elapsed_s,
            "n_samples": self.n_samples,
            "metadata": self.metadata,
        }
        arrays = {
            **({"values": _dense(self.values).detach().cpu().numpy()} if modes else {}),
            "intact": self.intact.detach().cpu().numpy(),
            "empty": self.empty.detach().cpu().numpy(),
            "unit_labels": np.asarray(self.unit_labels, dtype=str),
            "n_evaluations": np.asarray(self.n_evaluations, dtype=np.int64),
            "meta_json": np.asarray(json.dumps(meta)),
        }
        if self.stderr is not None and modes:
            arrays["stderr"] = _dense(self.stderr).detach().cpu().numpy()
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write the result to an ``.npz`` file (no pickles) and return its path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(tmp, **self.to_arrays())
        tmp.replace(path)  # atomic: a crash never leaves a half-written result
        return path

    @classmethod
    def from_arrays(cls, arrays: Any) -> "ShapleyResult":
        """Rebuild a result from the mapping written by :meth:`to_arrays` (e.g. an open npz)."""
        meta = json.loads(str(arrays["meta_json"])) if "meta_json" in arrays else {}
        stderr = torch.from_numpy(np.array(arrays["stderr"])) if "stderr" in arrays else None
        return cls(
            values=torch.from_numpy(np.array(arrays["values"])),
            stderr=stderr,
            n_evaluations=int(arrays["n_evaluations"]),
            intact=torch.from_numpy(np.array(arrays["intact"])),
            empty=torch.from_numpy(np.array(arrays["empty"])),
            method=meta.get("method", "unknown"),
            seed=meta.get("seed"),
            elapsed_s=float(meta.get("elapsed_s", 0.0)),
            unit_labels=[str(label) for label in arrays["unit_labels"]],
            n_samples=int(meta.get("n_samples", 0)),
            metadata=meta.get("metadata", {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> "ShapleyResult":
        """Read a result written by :meth:`save` (``allow_pickle=False``: safe on untrusted files)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no result file at {path}")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return cls.from_arrays(arrays)
        except (ValueError, KeyError, OSError) as error:
            raise ValueError(f"{path} is not a ShapleyResult file written by msa_core: {error}") from error

    def to_frame(self) -> pd.DataFrame:
        """Long table with one row per (unit, output index).

        Columns: ``unit`` (label), ``unit_index``, ``output_index`` (flat index into the output),
        ``output`` (the multi-index as a string, e.g. "(0, 3, 4)"), ``value``, ``stderr`` (NaN for exact).
        """
        values = _dense(self.values).detach().cpu().reshape(self.n_players, -1).numpy()
        n_out = values.shape[1]
        stderr = (
            _dense(self.stderr).detach().cpu().reshape(self.n_players, -1).numpy()
            if self.stderr is not None
            else np.full_like(values, np.nan)
        )
        flat_index = np.tile(np.arange(n_out), self.n_players)
        shape = self.output_shape
        output_labels = (
            [str(tuple(int(k) for k in np.unravel_index(i, shape))) for i in range(n_out)] if shape else ["()"]
        )
        return pd.DataFrame(
            {
                "unit": np.repeat(np.asarray(self.unit_labels, dtype=object), n_out),
                "unit_index": np.repeat(np.arange(self.n_players), n_out),
                "output_index": flat_index,
                "output": np.tile(np.asarray(output_labels, dtype=object), self.n_players),
                "value": values.reshape(-1),
                "stderr": stderr.reshape(-1),
            }
        )
