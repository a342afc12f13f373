"""The run store: finished runs and checkpoints in a diskcache directory, content-addressed by run key.

Layout (all values are plain ``str`` or ``bytes``; no pickled Python objects):

* ``meta/<id>``: JSON summary of a run (spec, params, label, timings): cheap to list;
* ``run/<id>``: bytes of an ``.npz`` holding ``ShapleyResult.to_arrays()`` plus ``record_json``;
* ``ckpt/<id>``: bytes of an ``.npz`` holding the sampling state of an unfinished run;
* ``arrays/<id>/values``, ``arrays/<id>/stderr`` (files, not diskcache): a result too large for
  memory, as :class:`~msa_core.ondisk.ChunkedArray` folders (``run/<id>`` then holds the rest and
  ``arrays_dir``); ``RunStore(large_dtype="float32")`` halves them.

The directory is ``root`` if given, else ``$MSA_HOME`` (read at call time), else the user cache
directory (``$XDG_CACHE_HOME/msa-explorer``, ``~/.cache/msa-explorer``; ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows). The app and the CLI therefore share one store.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..result import ShapleyResult
from .record import RunNotFound, RunRecord, _npz_bytes, _npz_load
from .spec import RunSpec

__all__ = ["RunStore", "RunRecord", "default_root", "RunNotFound"]

_EXPORT_SUFFIXES = (".npz", ".csv", ".parquet")


def default_root() -> Path:
    """``$MSA_HOME`` if set (read now), else the per-user cache directory for msa-explorer."""
    env = os.environ.get("MSA_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "msa-explorer"


class RunStore:
    """Finished runs and checkpoints, content-addressed by run key, in a diskcache directory."""

    def __init__(self, root: str | Path | None = None, *, large_dtype: str = "float64") -> None:
        import diskcache

        self.large_dtype = np.dtype(large_dtype)
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(str(self.root / "runs"))

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def close(self) -> None:
        self.cache.close()

    # ------------------------------------------------------------------ ids
    def ids(self) -> list[str]:
        """All stored run ids."""
        return [k[5:] for k in list(self.cache.iterkeys()) if isinstance(k, str) and k.startswith("meta/")]

    def resolve_id(self, run_id: str) -> str:
        """The full id of a stored run from its id or a unique prefix (>= 4 characters)."""
        run_id = (run_id or "").strip().lower()
        if f"meta/{run_id}" in self.cache:
            return run_id
        if len(run_id) < 4:
            raise RunNotFound(f"no run with id {run_id!r} (give at least 4 characters of the id)")
        matches = [i for i in self.ids() if i.startswith(run_id)]
        if not matches:
            raise RunNotFound(f"no run with id {run_id!r}; see `msa runs list`")
        if len(matches) > 1:
            raise RunNotFound(f"id prefix {run_id!r} matches {len(matches)} runs; give more characters")
        return matches[0]

    # ------------------------------------------------------------------ runs
    def get(self, run_id: str) -> RunRecord | None:
        """The run with this id (or unique id prefix), or None."""
        try:
            run_id = self.resolve_id(run_id)
        except RunNotFound:
            return None
        meta = self.cache.get(f"meta/{run_id}")
        if meta is None:
            return None
        return RunRecord.from_json(json.loads(meta), loader=lambda: self._load_result(run_id))

    def _load_result(self, run_id: str) -> ShapleyResult:
        data = self.cache.get(f"run/{run_id}")
        if data is None:
            raise RunNotFound(f"run {run_id[:12]} was deleted")
        arrays = _npz_load(data)
        if "arrays_dir" not in arrays:
            return ShapleyResult.from_arrays(arrays)
        from ..ondisk import ChunkedArray

        folder = self.root / str(arrays["arrays_dir"])
        arrays["values"] = np.zeros((len(arrays["unit_labels"]), 0))  # replaced by the on-disk modes
        result = ShapleyResult.from_arrays(arrays)
        result.values = ChunkedArray(folder / "values")
        result.stderr = ChunkedArray(folder / "stderr") if (folder / "stderr").exists() else None
        return result

    def scratch_dir(self) -> Path:
        """Where runs keep on-disk accumulators (next to the stored arrays, so results move, not copy)."""
        return self.root / "arrays" / "scratch"

    def _keep_on_disk(self, record: RunRecord) -> dict[str, Any]:
        """Move (or cast-copy) an on-disk result's arrays to ``arrays/<id>``; the result's own arrays."""
        result = record.result
        folder = self.root / "arrays" / record.id
        for name in ("values", "stderr"):
            array = getattr(result, name)
            if array is None or array.path == folder / name:
                continue
            source = array.path.parent
            if array.dtype != self.large_dtype:
                kept = array.copy_to(folder / (name + ".partial"), self.large_dtype).move_to(folder / name)
                array.delete()
            else:
                kept = array.move_to(folder / name)
            setattr(result, name, kept)
            try:
                source.rmdir()  # the run's emptied scratch folder
            except OSError:
                pass
        result.metadata.pop("arrays", None)
        arrays = result.to_arrays(modes=False)
        arrays["arrays_dir"] = np.asarray(f"arrays/{record.id}")
        return arrays

    def find(self, spec: RunSpec) -> RunRecord | None:
        """The stored run for ``spec`` (same run key), or None. Loads the subject to fingerprint it."""
        from .spec import run_key

        return self.get_exact(run_key(spec))

    def get_exact(self, run_id: str) -> RunRecord | None:
        """The run with exactly this id, or None (no prefix matching)."""
        meta = self.cache.get(f"meta/{run_id}")
        if meta is None:
            return None
        return RunRecord.from_json(json.loads(meta), loader=lambda: self._load_result(run_id))

    def list(self) -> list[RunRecord]:
        """All runs, newest first (results are loaded on access)."""
        records = [r for r in (self.get_exact(i) for i in self.ids()) if r is not None]
        return sorted(records, key=lambda r: r.created, reverse=True)

    def put(self, record: RunRecord) -> RunRecord:
        """Store (or replace) a finished run."""
        result = record.result
        arrays = self._keep_on_disk(record) if result.on_disk else result.to_arrays()
        arrays["record_json"] = np.asarray(json.dumps(record.to_json()))
        self.cache.set(f"run/{record.id}", _npz_bytes(arrays))
        self.cache.set(f"meta/{record.id}", json.dumps(record.to_json()))
        return record

    def relabel(self, run_id: str, label: str) -> RunRecord:
        """Change a run's human label."""
        record = self.get(run_id)
        if record is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        record.label = label
        self.cache.set(f"meta/{record.id}", json.dumps(record.to_json()))
        return record

    def delete(self, run_id: str) -> bool:
        """Delete a run and its checkpoint; True if something was deleted."""
        try:
            run_id = self.resolve_id(run_id)
        except RunNotFound:
            deleted = self.cache.delete(f"ckpt/{run_id}")
            return bool(deleted)
        removed = [self.cache.delete(f"{prefix}/{run_id}") for prefix in ("meta", "run", "ckpt")]
        import shutil

        shutil.rmtree(self.root / "arrays" / run_id, ignore_errors=True)
        return any(removed)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, run_id: str, state_dict: dict[str, Any], info: dict[str, Any] | None = None) -> None:
        """Store a :meth:`SamplingState.state_dict` (flattened to npz bytes, the method's ``extra`` state
        included) for run ``run_id``."""
        from ..estimators.base import flatten_state

        arrays: dict[str, Any] = flatten_state(state_dict)
        arrays["info_json"] = np.asarray(json.dumps({**(info or {}), "saved": time.time()}))
        self.cache.set(f"ckpt/{run_id}", _npz_bytes(arrays))

    def load_checkpoint(self, run_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(state_dict, info)`` of run ``run_id``'s checkpoint, or None (also for a corrupt one)."""
        from ..estimators.base import unflatten_state

        data = self.cache.get(f"ckpt/{run_id}")
        if data is None:
            return None
        try:
            arrays = _npz_load(data)
        except (ValueError, OSError):
            return None  # a corrupt checkpoint: start over rather than fail
        info = json.loads(str(arrays.pop("info_json")))
        if "count" in arrays:  # the layout before the flat one: accumulator fields at the top level
            arrays = {(f"accumulator/{k}" if k in ("count", "mean", "m2") else k): v for k, v in arrays.items()}
        state = unflatten_state(arrays)
        state.setdefault("accumulator", {})
        state["accumulator"].setdefault("count", 0)
        for name in ("mean", "m2"):
            state["accumulator"].setdefault(name, None)
        for name in ("empty", "intact"):
            state.setdefault(name, None)
        return state, info

    def has_checkpoint(self, run_id: str) -> bool:
        return f"ckpt/{run_id}" in self.cache

    def delete_checkpoint(self, run_id: str) -> None:
        self.cache.delete(f"ckpt/{run_id}")

    def checkpoints(self) -> list[str]:
        """Ids of unfinished runs with a checkpoint."""
        return [k[5:] for k in list(self.cache.iterkeys()) if isinstance(k, str) and k.startswith("ckpt/")]

    # ------------------------------------------------------------------ export / import
    def export(self, run_id: str, path: str | Path) -> Path:
        """Write a run to ``path``: ``.npz`` (the result's arrays + the record as JSON), ``.csv`` or
        ``.parquet`` (a long table, one row per unit and output index). Written atomically."""
        record = self.get(run_id)
        if record is None:
            raise RunNotFound(f"no run with id {run_id!r}; see `msa runs list`")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in _EXPORT_SUFFIXES:
            raise ValueError(f"cannot export to {path.name}: use a .npz, .csv or .parquet file name")
        if not path.parent.exists():
            raise ValueError(f"cannot export to {path}: folder {path.parent} does not exist")
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}{suffix}")
        try:
            if suffix == ".npz" and record.result.on_disk:  # streamed: memory stays at one range
                from ..ondisk import write_npz_streaming

                arrays = record.result.to_arrays(modes=False)
                arrays["record_json"] = np.asarray(json.dumps(record.to_json()))
                chunked = {"values": record.result.values}
                if record.result.stderr is not None:
                    chunked["stderr"] = record.result.stderr
                write_npz_streaming(tmp, arrays, chunked)
            elif suffix == ".npz":
                arrays = record.result.to_arrays()
                arrays["record_json"] = np.asarray(json.dumps(record.to_json()))
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, **arrays)
            else:
                frame = record.result.to_frame()
                frame.insert(0, "run_id", record.id)
                if suffix == ".csv":
                    frame.to_csv(tmp, index=False)
                else:
                    try:
                        import pyarrow  # noqa: F401
                    except ImportError:
                        raise ValueError("parquet export needs pyarrow (pip install pyarrow); use .csv instead") from None
                    frame.to_parquet(tmp, index=False)
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def import_(self, path: str | Path) -> RunRecord:
        """Import a run from an ``.npz`` written by :meth:`export` or by ``ShapleyResult.save``."""
        import hashlib

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no file at {path}")
        if path.suffix.lower() != ".npz":
            raise ValueError(f"cannot import {path.name}: only .npz files (from `msa runs export` or ShapleyResult.save)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            result = ShapleyResult.from_arrays(arrays)
        except (ValueError, KeyError, OSError) as error:
            raise ValueError(f"{path.name} is not a run or result file written by msa_core: {error}") from error
        if "record_json" in arrays:
            record = RunRecord.from_json(json.loads(str(arrays["record_json"])), result=result)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            meta = result.metadata or {}
            spec = RunSpec(
                model=str(meta.get("model", f"imported:{path.name}")),
                inputs=str(meta["inputs"]) if meta.get("inputs") else None,
                method=result.method if result.method in ("exact", "permutation", "antithetic", "owen") else "permutation",
                n_permutations=max(1, int(result.n_samples or 1)),
                seed=int(result.seed or 0),
                label=path.stem,
            )
            record = RunRecord(
                id=digest, spec=spec, result=result, created=time.time(), elapsed_s=result.elapsed_s,
                label=path.stem, params={"imported_from": str(path), "n_players": result.n_players,
                                          "output_shape": list(result.output_shape),
                                          "n_evaluations": result.n_evaluations},
            )
        record.params["imported_from"] = str(path)
        return self.put(record)
