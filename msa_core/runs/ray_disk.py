"""Ray, accumulate on workers, on disk: for games whose moments do not fit a worker's memory bound.

Where a worker's mean and ``m2`` (``2 x n_players x output x 8`` bytes) do not fit its ``max_memory``
(the paper's GAN game: 2 x 25 GB), :mod:`msa_core.runs.ray_accumulate` keeps them on disk at both ends:

* the driver makes a *parts folder* for the run session under the store's scratch folder
  (:func:`parts_folder`, ``<MSA_HOME>/arrays/scratch/ray-<key>-<id>``) holding a marker with a random
  token; before the first round every worker reads the marker back (:func:`visibility_problem`), so a
  folder that is not on a filesystem shared by the driver and the workers (at the same path) is a
  clear error before any work, not a wrong or a lost result;
* a worker streams its units ``[a, b)`` into a :class:`~msa_core.accumulate.DiskMoments` folder inside
  the parts folder (:func:`accumulate_on_disk`: the bounded local loop,
  :func:`~msa_core.bounded.stream_estimate`, with the worker's own memory plan) and returns only the
  folder's path and the counts;
* the driver merges each part into its own on-disk moments in unit order, ``max_bytes`` of rows at a
  time (:func:`merge_part`: :meth:`MomentAccumulator.merge` on row ranges, so the arithmetic is the
  in-memory merge's), deletes the part and finishes through :func:`~msa_core.bounded.disk_result`
  (the method's ``finish_on_disk``), so the driver's memory is a few row ranges too.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..accumulate import DiskMoments, MomentAccumulator
from ..ondisk import DEFAULT_CHUNK_BYTES

__all__ = ["parts_folder", "read_marker", "visibility_problem", "accumulate_on_disk", "merge_part", "to_disk",
           "merge_bytes", "remove_parts", "SHARED_FOLDER_HINT"]

MARKER = "driver.json"
SHARED_FOLDER_HINT = ("accumulating on the workers' disks needs a folder that the driver and every worker see at "
                      "the same path: Ray on one machine, or MSA_HOME (the run store) on a shared filesystem")


def parts_folder(scratch_dir: str | Path, key: str) -> Path:
    """Driver side: a new folder for one run session's worker parts, with a marker holding a random token."""
    folder = Path(scratch_dir) / f"ray-{key[:12]}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=False)
    (folder / MARKER).write_text(json.dumps({"token": uuid.uuid4().hex, "host": socket.gethostname()}))
    return folder


def read_marker(folder: str | Path) -> str | None:
    """The token of the driver's marker in ``folder`` as this process sees it; None where it is not visible."""
    try:
        return str(json.loads((Path(folder) / MARKER).read_text())["token"])
    except (OSError, ValueError, KeyError):
        return None


def visibility_problem(ray_game: Any, folder: Path) -> str | None:
    """None where every worker of ``ray_game`` reads the driver's marker in ``folder``, else why not (one line)."""
    token = read_marker(folder)
    seen = ray_game.wait([worker.probe.remote(str(folder)) for worker in ray_game.workers])
    blind = [f"{host} (worker {i})" for i, (found, host) in enumerate(seen) if found != token]
    if not blind:
        return None
    return (f"the run's folder {folder} (made on {socket.gethostname()}) is not visible on "
            f"{', '.join(blind)}: {SHARED_FOLDER_HINT}")


def accumulate_on_disk(estimator: Any, game: Any, spec: Any, state: Any, stop: int, folder: str,
                       plan: Any) -> dict[str, Any]:
    """Worker side: stream units ``[state.next_unit, stop)`` into new on-disk moments inside ``folder``.

    ``state`` is a :class:`SamplingState` with the driver's endpoints and ``next_unit`` set; ``plan``
    the worker's :func:`~msa_core.bounded.memory_plan` (``on_disk``). Returns ``{"count", "path",
    "n_evaluations"}``: the moments ``(n_players, *output)`` stay in the folder ``path`` (mean and m2
    as :class:`~msa_core.ondisk.ChunkedArray`); nothing of size ``output`` is returned.
    """
    from ..bounded import stream_estimate
    from ..estimators import GameRunner
    from ..estimators.base import begin_run

    if read_marker(folder) is None:
        raise ValueError(f"the driver's folder {folder} is not visible on this worker ({socket.gethostname()}): "
                         f"{SHARED_FOLDER_HINT}")
    n = int(game.n_players)
    runner = GameRunner(game, n, batch_size=spec.batch_size, device=spec.device)
    state, empty, intact = begin_run(runner, state, 2 + int(stop) * estimator.evaluations_per_unit(n))
    with torch.no_grad():
        stream_estimate(estimator, runner, n, seed=spec.seed, total_units=int(stop), state=state, empty=empty,
                        intact=intact, plan=plan, scratch_dir=folder, on_block=None)
    moments = state.accumulator
    if not isinstance(moments, DiskMoments):
        raise ValueError(f"the worker kept the moments of units up to {stop} in memory, not in {folder}")
    return {"count": int(moments.count), "path": str(moments.path), "n_evaluations": int(state.n_evaluations)}


def merge_bytes(max_memory: int, output_size: int) -> int:
    """Bytes of one row range the driver reads per array while merging and finishing on disk: the merge
    holds about 10 such arrays (both moments of both sides, Chan's temporaries), so ``max_memory / 32``,
    at least one row ``(output,)`` float64."""
    return int(max(8 * max(1, output_size), min(DEFAULT_CHUNK_BYTES, int(max_memory) // 32)))


def to_disk(moments: Any, shape: tuple[int, ...], scratch_dir: str | Path, max_bytes: int) -> DiskMoments:
    """The driver's moments on disk: ``moments`` itself where it is on disk, else new on-disk moments of
    ``shape`` (``(n_players, *output)``) under ``scratch_dir`` holding what ``moments`` merged so far."""
    from ..bounded import scratch_folder

    if isinstance(moments, DiskMoments):
        return moments
    target = DiskMoments.create(scratch_folder(scratch_dir), shape, chunk_bytes=max_bytes)
    if moments.count:
        merge_part(target, {"count": moments.count, "mean": moments.mean, "m2": moments.m2}, max_bytes)
    return target


def _part_rows(part: dict[str, Any], source: DiskMoments | None, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``rows`` of a part's mean and m2, float64 tensors ``(len(rows), *output)`` (copies)."""
    if source is not None:
        return torch.from_numpy(source.mean.read_rows(rows)), torch.from_numpy(source.m2.read_rows(rows))
    arrays = (part[name] for name in ("mean", "m2"))  # a tensor (the driver's own) or a worker's read-only array
    return tuple(a.detach().cpu()[torch.from_numpy(rows)].to(torch.float64) if isinstance(a, torch.Tensor)
                 else torch.from_numpy(np.asarray(a, dtype=np.float64)[rows]) for a in arrays)


def merge_part(target: DiskMoments, part: dict[str, Any], max_bytes: int) -> None:
    """Driver side: merge one worker part into ``target`` (the run's on-disk moments), range by range.

    ``part`` is a worker's answer: on disk ``{"count", "path"}`` (opened, checked and deleted after the
    merge) or in memory ``{"count", "mean", "m2"}`` (``(n_players, *output)``, a worker whose moments
    fitted). Rows are merged ``max_bytes`` at a time with :meth:`MomentAccumulator.merge`; the folder
    is marked dirty meanwhile, so an interrupted merge is never resumed from.
    """
    source = None
    if part.get("path") is not None:
        try:
            source = DiskMoments.open(part["path"], int(part["count"]))
        except ValueError as error:
            raise ValueError(f"a worker's on-disk moments are not readable on the driver ({error}): "
                             f"{SHARED_FOLDER_HINT}") from error
        if source.shape != target.shape:
            raise ValueError(f"a worker's on-disk moments have shape {source.shape}, the run's {target.shape}")
    count = int(part["count"])
    target.begin_sample()
    for start, stop in target.mean.ranges(max_bytes):
        rows = np.arange(start, stop)
        merged = MomentAccumulator(target.count, torch.from_numpy(target.mean.read_rows(rows)),
                                   torch.from_numpy(target.m2.read_rows(rows)))
        mean, m2 = _part_rows(part, source, rows)
        merged.merge(MomentAccumulator(count, mean, m2))
        target.mean.write_rows(rows, merged.mean)
        target.m2.write_rows(rows, merged.m2)
    # DiskMoments counts one sample per finish_sample: a part brings ``count`` at once
    target.count += count - 1
    target.finish_sample()
    if source is not None:
        shutil.rmtree(source.path, ignore_errors=True)


def remove_parts(folder: Path | None) -> None:
    """Delete a parts folder (what is left of an unfinished round is never resumed from)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
