"""Game values spilled to disk by output columns, and results written column chunk by column chunk.

The estimators that are linear in the game values (exact, kernel, leverage, kadd, regression_mc) can
run in bounded memory by evaluating their design once, writing the values ``(rows, outputs)`` to disk,
then solving one chunk of output columns at a time (:mod:`msa_core.bounded_linear`).
:class:`ValueSpill` keeps those values as one float64 ``.npy`` file per column chunk, each
``(rows, width)`` row-major, so both writing a block of rows and reading one chunk's rows are
contiguous. :class:`ColumnWriter` fills a result ``(n_players, *output)``, in memory or as a
:class:`~msa_core.ondisk.ChunkedArray`, one column chunk at a time.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .ondisk import ChunkedArray

__all__ = ["ValueSpill", "ColumnWriter"]

_META = "spill.json"


class ValueSpill:
    """Float64 values ``(rows, outputs)`` on disk in files of ``width`` columns (the last narrower).

    Only the rows an operation touches are mapped, one file at a time, and unmapped at once: resident
    memory stays at one block of rows whatever the array's size. A process kill loses no written row
    (the page cache writes shared mappings back).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = json.loads((self.path / _META).read_text())
        self.rows, self.outputs, self.width = int(meta["rows"]), int(meta["outputs"]), int(meta["width"])

    @classmethod
    def create(cls, path: str | Path, rows: int, outputs: int, width: int) -> "ValueSpill":
        """Sparse zero files at a new folder ``path`` (disk is allocated as rows are written)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=False)
        width = max(1, min(int(width), int(outputs)))
        for index, start in enumerate(range(0, outputs, width)):
            handle = np.lib.format.open_memmap(path / f"columns-{index:05d}.npy", mode="w+", dtype=np.float64,
                                               shape=(int(rows), min(width, outputs - start)))
            del handle
        (path / _META).write_text(json.dumps({"rows": int(rows), "outputs": int(outputs), "width": width}))
        return cls(path)

    @staticmethod
    def matches(path: str | Path, rows: int, outputs: int) -> bool:
        """True where ``path`` holds a spill of ``rows`` x ``outputs`` values (to resume it)."""
        try:
            spill = ValueSpill(path)
        except (OSError, ValueError, KeyError):
            return False
        return spill.rows == int(rows) and spill.outputs == int(outputs)

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """``(c0, c1)`` column ranges of the files, in order."""
        return [(start, min(self.outputs, start + self.width)) for start in range(0, self.outputs, self.width)]

    def _file(self, index: int, mode: str) -> np.ndarray:
        return np.load(self.path / f"columns-{index:05d}.npy", mmap_mode=mode)

    def write(self, row0: int, values: torch.Tensor) -> None:
        """Write ``values`` ``(k, outputs)`` into rows ``row0 .. row0 + k - 1``."""
        data = values.detach().cpu().numpy().reshape(values.shape[0], -1)
        for index, (c0, c1) in enumerate(self.chunks):
            mapped = self._file(index, "r+")
            mapped[row0 : row0 + data.shape[0]] = data[:, c0:c1]
            del mapped

    def read(self, row0: int, row1: int, c0: int, c1: int) -> torch.Tensor:
        """Values of rows ``row0..row1-1``, columns ``c0..c1-1`` (inside one file): ``(row1 - row0, c1 - c0)``."""
        index = c0 // self.width
        start = index * self.width
        if c1 > min(self.outputs, start + self.width):
            raise ValueError(f"columns {c0}..{c1} span two spill files of width {self.width}")
        mapped = self._file(index, "r")
        block = np.array(mapped[row0:row1, c0 - start : c1 - start])
        del mapped
        return torch.from_numpy(block)

    def disk_bytes(self) -> int:
        """Bytes the files occupy on disk (allocated blocks)."""
        return sum(f.stat().st_blocks * 512 for f in self.path.glob("columns-*.npy"))

    def delete(self) -> None:
        """Remove the folder."""
        shutil.rmtree(self.path, ignore_errors=True)


def _write_columns(array: ChunkedArray, c0: int, c1: int, data: np.ndarray) -> None:
    """Columns ``c0..c1-1`` of every (flattened) row of ``array`` from ``data`` ``(n_rows, c1 - c0)``.

    Maps one chunk file (``chunk-XXXXX.npy``, the documented layout of :mod:`msa_core.ondisk`) at a time.
    """
    for index, start in enumerate(range(0, array.shape[0], array.rows_per_chunk)):
        mapped = np.load(array.path / f"chunk-{index:05d}.npy", mmap_mode="r+")
        flat = mapped.reshape(mapped.shape[0], -1)
        flat[:, c0:c1] = data[start : start + flat.shape[0]].astype(array.dtype)
        del flat, mapped


class ColumnWriter:
    """A result ``(n_players, *output)`` (values, optionally stderr) filled by output column chunks.

    In memory (float64 tensors) or, with ``folder``, as :class:`ChunkedArray` s ``folder/values``,
    ``folder/stderr`` (float64) of at most ``chunk_bytes`` per chunk file.
    """

    def __init__(self, n_players: int, output_shape: tuple[int, ...], *, stderr: bool, folder: Path | None,
                 chunk_bytes: int) -> None:
        shape = (n_players, *output_shape)
        self.outputs = max(1, math.prod(output_shape))
        self.folder = folder
        if folder is None:
            self.values: Any = torch.zeros((n_players, self.outputs), dtype=torch.float64)
            self.stderr: Any = torch.zeros_like(self.values) if stderr else None
        else:
            self.values = ChunkedArray.create(folder / "values", shape, np.float64, chunk_bytes=chunk_bytes)
            self.stderr = ChunkedArray.create(folder / "stderr", shape, np.float64, chunk_bytes=chunk_bytes) if stderr else None
        self.shape = shape

    def write(self, c0: int, c1: int, values: torch.Tensor, stderr: torch.Tensor | None) -> None:
        """Columns ``c0..c1-1`` of the flattened output: ``values``/``stderr`` ``(n_players, c1 - c0)``."""
        for target, data in ((self.values, values), (self.stderr, stderr)):
            if target is None or data is None:
                continue
            if isinstance(target, ChunkedArray):
                _write_columns(target, c0, c1, data.cpu().numpy())
            else:
                target[:, c0:c1] = data.to(torch.float64)

    def arrays(self) -> tuple[Any, Any]:
        """``(values, stderr)`` of shape ``(n_players, *output)`` (stderr None without one)."""
        if self.folder is not None:
            return self.values, self.stderr
        stderr = None if self.stderr is None else self.stderr.reshape(self.shape)
        return self.values.reshape(self.shape), stderr
