"""Chunked on-disk arrays: ``(n_rows, *row_shape)`` arrays stored as ``.npy`` files of whole rows.

A :class:`ChunkedArray` holds, say, one Shapley mode per row. Rows live in chunk files of at most
``chunk_bytes`` each (``chunk-00000.npy``, ...), next to ``array.json`` (shape, dtype, rows per
chunk). Reading or writing rows maps only the chunk files that hold them, one at a time, so address
space and resident memory stay within one chunk whatever the array's size. Each chunk is a plain
``.npy`` file that ``numpy.load`` opens without pickles.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

__all__ = ["ChunkedArray", "DEFAULT_CHUNK_BYTES", "is_on_disk", "write_npz_streaming"]

DEFAULT_CHUNK_BYTES = 64 * 2**20
_META = "array.json"


def is_on_disk(array: Any) -> bool:
    """True for a :class:`ChunkedArray` (rather than an in-memory tensor)."""
    return isinstance(array, ChunkedArray)


class ChunkedArray:
    """An ``(n_rows, *row_shape)`` array on disk, read and written by rows (see module docstring).

    ``array[i]`` returns row ``i`` as a torch tensor without reading other chunks; ``array[a:b]``
    rows ``a..b-1``; ``array[i, ...]`` indexes into row ``i``. Open with :meth:`open`, make with
    :meth:`create`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / _META
        if not meta_path.exists():
            raise FileNotFoundError(f"no chunked array at {self.path} (missing {_META})")
        meta = json.loads(meta_path.read_text())
        self.shape: tuple[int, ...] = tuple(int(s) for s in meta["shape"])
        self.dtype = np.dtype(meta["dtype"])
        self.rows_per_chunk = int(meta["rows_per_chunk"])
        self._offsets: dict[int, int] = {}

    # ------------------------------------------------------------------ making
    @classmethod
    def create(
        cls,
        path: str | Path,
        shape: Sequence[int],
        dtype: Any = np.float64,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> "ChunkedArray":
        """A zero-filled array at ``path`` (a new folder; sparse files, no writes of zeros)."""
        path = Path(path)
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        row_bytes = max(1, math.prod(shape[1:]) * dtype.itemsize)
        rows_per_chunk = max(1, min(max(1, shape[0]), int(chunk_bytes) // row_bytes))
        path.mkdir(parents=True, exist_ok=True)
        for index, start in enumerate(range(0, shape[0], rows_per_chunk)):
            rows = min(rows_per_chunk, shape[0] - start)
            handle = np.lib.format.open_memmap(path / f"chunk-{index:05d}.npy", mode="w+", dtype=dtype,
                                               shape=(rows, *shape[1:]))
            del handle
        (path / _META).write_text(json.dumps({"shape": list(shape), "dtype": dtype.str,
                                              "rows_per_chunk": rows_per_chunk}))
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "ChunkedArray":
        """Open an existing array folder."""
        return cls(path)

    # ------------------------------------------------------------------ shape
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def nbytes(self) -> int:
        """Bytes of the data (as loaded in memory)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def disk_bytes(self) -> int:
        """Bytes the chunk files occupy on disk (allocated blocks)."""
        return sum(f.stat().st_blocks * 512 for f in self.path.glob("chunk-*.npy"))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ChunkedArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.shape[0] / self.rows_per_chunk) if self.shape[0] else 0

    # ------------------------------------------------------------------ chunk access
    def _chunk_path(self, index: int) -> Path:
        return self.path / f"chunk-{index:05d}.npy"

    def _map(self, index: int, mode: str) -> np.memmap:
        """Memory-map chunk ``index`` (the caller drops it promptly to unmap)."""
        rows = min(self.rows_per_chunk, self.shape[0] - index * self.rows_per_chunk)
        if index not in self._offsets:
            with open(self._chunk_path(index), "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    np.lib.format.read_array_header_1_0(handle)
                else:
                    np.lib.format.read_array_header_2_0(handle)
                self._offsets[index] = handle.tell()
        return np.memmap(self._chunk_path(index), dtype=self.dtype, mode=mode, offset=self._offsets[index],
                         shape=(rows, *self.row_shape))

    def _groups(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(chunk, positions in rows, rows within the chunk)`` for each chunk the rows touch."""
        chunks = rows // self.rows_per_chunk
        order = np.argsort(chunks, kind="stable")
        sorted_chunks = chunks[order]
        bounds = np.flatnonzero(np.diff(sorted_chunks)) + 1
        for group in np.split(order, bounds):
            if len(group):
                chunk = int(chunks[group[0]])
                yield chunk, group, rows[group] - chunk * self.rows_per_chunk

    def _check_rows(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -self.shape[0] or rows.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        return np.where(rows < 0, rows + self.shape[0], rows)

    def read_rows(self, rows: Any) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed): ndarray ``(len(rows), *row_shape)``."""
        rows = self._check_rows(rows)
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        for chunk, positions, local in self._groups(rows):
            mapped = self._map(chunk, "r")
            out[positions] = mapped[local]
            del mapped
        return out

    def write_rows(self, rows: Any, data: Any) -> None:
        """Write ``data`` ``(len(rows), *row_shape)`` into rows ``rows`` (distinct indices)."""
        rows = self._check_rows(rows)
        data = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        data = data.reshape(len(rows), *self.row_shape)
        for chunk, positions, local in self._groups(rows):
            mapped = self._map(chunk, "r+")
            mapped[local] = data[positions]
            del mapped  # unmapped: the page cache writes it back (no msync per write: a process kill loses nothing)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop-1``: ndarray ``(stop - start, *row_shape)``."""
        return self.read_rows(np.arange(max(0, start), min(stop, self.shape[0])))

    def ranges(self, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges of at most ``max_bytes`` each (at least one row), in order."""
        row_bytes = max(1, math.prod(self.row_shape) * self.dtype.itemsize)
        step = max(1, int(max_bytes) // row_bytes)
        for start in range(0, self.shape[0], step):
            yield start, min(self.shape[0], start + step)

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, key: Any) -> torch.Tensor:
        """Row(s) as a torch tensor: ``a[i]``, ``a[i, ...]``, ``a[a:b]``, ``a[[i, j]]``."""
        rest: Any = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            array = self.read_rows([int(key)])[0]
        elif isinstance(key, slice):
            array = self.read_rows(np.arange(self.shape[0])[key])
        elif isinstance(key, torch.Tensor):
            array = self.read_rows(key.cpu().numpy())
        else:
            array = self.read_rows(key)
        if rest:
            array = array[(slice(None), *rest)] if not isinstance(key, (int, np.integer)) else array[rest]
        return torch.from_numpy(np.ascontiguousarray(array))

    def numpy(self) -> np.ndarray:
        """The whole array in memory (only for arrays that fit)."""
        return self.read_range(0, self.shape[0])

    def to_tensor(self) -> torch.Tensor:
        """The whole array as a torch tensor in memory (only for arrays that fit)."""
        return torch.from_numpy(self.numpy())

    def copy_to(self, path: str | Path, dtype: Any = None, *, max_bytes: int = DEFAULT_CHUNK_BYTES) -> "ChunkedArray":
        """A copy at ``path`` (optionally cast, e.g. to float32), streamed range by range."""
        target = ChunkedArray.create(path, self.shape, dtype or self.dtype)
        for start, stop in self.ranges(max_bytes):
            target.write_rows(np.arange(start, stop), self.read_range(start, stop).astype(target.dtype))
        return target

    @classmethod
    def from_array(cls, path: str | Path, array: Any, dtype: Any = None) -> "ChunkedArray":
        """Write an in-memory array (tensor or ndarray) to a new chunked array at ``path``."""
        data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        target = cls.create(path, data.shape, dtype or data.dtype)
        for start, stop in target.ranges():
            target.write_rows(np.arange(start, stop), data[start:stop].astype(target.dtype))
        return target

    def move_to(self, path: str | Path) -> "ChunkedArray":
        """Move the folder to ``path`` (a rename on one file system) and return the moved array."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            shutil.rmtree(path)
        shutil.move(str(self.path), str(path))
        return ChunkedArray(path)

    def delete(self) -> None:
        """Remove the array's folder."""
        shutil.rmtree(self.path, ignore_errors=True)


def write_npz_streaming(path: str | Path, arrays: dict[str, Any], chunked: dict[str, "ChunkedArray"],
                        *, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Path:
    """Write an ``.npz`` holding ``arrays`` (in memory) and ``chunked`` (streamed range by range).

    ``numpy.load`` reads the file as usual (``allow_pickle=False``); memory stays at one range.
    """
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)
        for name, array in chunked.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                          "shape": array.shape}
                np.lib.format.write_array_header_2_0(handle, header)
                for start, stop in array.ranges(max_bytes):
                    handle.write(np.ascontiguousarray(array.read_range(start, stop)).tobytes())
    return path
