"""Estimators linear in the game values (exact, kernel, leverage, kadd, regression_mc) in bounded memory.

Given its design (the coalitions it evaluates), each of these estimators is linear in the game values:
``phi = W y`` for exact, ``phi = M y`` for the regressions, and their jackknife / cross-fitted standard
errors are per-output functions of ``y``. So every output column can be solved on its own.
:func:`linear_plan` decides, from ``max_memory``:

* ``"memory"``: the usual loop, every output at once, with as many units per block as fit (the
  unbounded block size where it fits: bit-identical to a run without a bound);
* ``"spill"``: where the per-output state (regression normal equations ``B (G + 1, p, outputs)``, or
  exact's ``phi (n, outputs)``) does not fit: the design is evaluated in blocks sized to the bound,
  its values ``y (coalitions, outputs)`` written to disk by column chunks
  (:class:`~msa_core.spill.ValueSpill`, ``coalitions x outputs x 8`` bytes), then solved one column
  chunk at a time with the estimator's in-memory solver; values and stderr are written chunk by chunk,
  into tensors or, where they do not fit either, on-disk :class:`~msa_core.ondisk.ChunkedArray` s.
  Values equal the unbounded run's to float rounding (tested to 1e-12), with the same evaluations.

Memory in "spill": ``O(block x outputs)`` while evaluating, ``O(G x p x p + G x p x width)`` while
solving; a bound below one output column's needs (e.g. kadd's ``p x p`` matrices for large ``n``)
raises ValueError naming the sizes. Checkpoints hold the spill's folder and the evaluated units; a
resume continues the spill (or, where its folder is gone, restarts it cleanly); the column pass needs
no game calls and restarts from its first chunk.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .bounded import scratch_folder
from .memory import format_bytes
from .ondisk import DEFAULT_CHUNK_BYTES
from .spill import ColumnWriter, ValueSpill

__all__ = ["LinearPlan", "linear_plan", "open_spill", "spill_width", "result_run", "evaluate_into_spill", "solve_by_columns", "LINEAR_METHODS"]

LINEAR_METHODS = ("exact", "kernel", "leverage", "kadd", "regression_mc")
_F64 = 8
_ROW_COPIES = 4  # live (outputs,) float64 copies per evaluated coalition: runner batches, their concat, y, view
_SOLVE_ROW_COPIES = 3  # per spilled row read in the column pass: the read, y - empty, the product's input


@dataclass
class LinearPlan:
    """How a linear estimator keeps within ``max_memory`` (see module docstring).

    Attributes:
        mode: "memory" or "spill".
        block: units (pairs, coalitions, exact blocks) per evaluation block.
        width: output columns per solve chunk ("spill"; all outputs in "memory").
        solve_block: units per block of the column pass ("spill").
        result_on_disk: whether values and stderr are written as on-disk arrays.
        chunk_bytes: chunk file size of on-disk results.
        max_memory: the bound in bytes; estimate_bytes: the plan's estimate of its peak.
        disk_bytes: bytes on disk: the spilled values, and the result where it is on disk (0 in "memory").
    """

    mode: str
    block: int
    width: int
    solve_block: int
    result_on_disk: bool
    chunk_bytes: int
    max_memory: int
    estimate_bytes: int
    disk_bytes: int

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for ``result.metadata["memory"]``)."""
        return {"mode": self.mode, "block": self.block, "width": self.width, "solve_block": self.solve_block,
                "on_disk": self.result_on_disk, "max_memory": self.max_memory,
                "estimate_bytes": self.estimate_bytes, "disk_bytes": self.disk_bytes}


def linear_plan(
    method: str,
    *,
    outputs: int,
    n_players: int,
    rows: int,
    rows_per_unit: int,
    natural_block: int,
    fixed_bytes: int,
    design_bytes: int,
    per_column_bytes: int,
    per_row_bytes: int,
    max_memory: int,
    stderr: bool,
    force_spill: bool = False,
    what: str = "its state",
) -> LinearPlan:
    """The plan for a linear estimator whose memory is, per the estimator's own accounting:

    ``fixed_bytes`` (output-independent arrays of the solve, e.g. ``A`` and its KKT copies),
    ``design_bytes`` (what the evaluation pass keeps, e.g. ``A`` alone), ``per_column_bytes`` per output
    column solved at once, ``per_row_bytes`` per evaluated coalition besides its values (features,
    weights); ``rows`` coalitions in all, ``rows_per_unit`` per unit. Raises ValueError with the sizes
    where even one output column cannot be solved, or one unit cannot be evaluated, within the bound.
    """
    outputs = max(1, int(outputs))
    row_values = _ROW_COPIES * _F64 * outputs
    unit_bytes = rows_per_unit * (per_row_bytes + row_values)
    left = max_memory - fixed_bytes - outputs * per_column_bytes
    if not force_spill and left >= unit_bytes:
        block = int(max(1, min(natural_block, left // unit_bytes)))
        return LinearPlan("memory", block, outputs, block, False, DEFAULT_CHUNK_BYTES, max_memory,
                          fixed_bytes + outputs * per_column_bytes + block * unit_bytes, 0)
    result_bytes = (2 if stderr else 1) * n_players * outputs * _F64
    result_on_disk = result_bytes > max_memory // 4
    chunk_bytes = int(max(_F64, min(DEFAULT_CHUNK_BYTES, max_memory // 16)))
    held = chunk_bytes if result_on_disk else result_bytes
    solve_room = max_memory - fixed_bytes - held
    solve_unit = rows_per_unit * (per_row_bytes + _SOLVE_ROW_COPIES * _F64)
    if solve_room < per_column_bytes + solve_unit:
        raise ValueError(
            f"method {method!r} cannot run within max_memory={format_bytes(max_memory)}: {what} needs "
            f"{format_bytes(fixed_bytes)} plus {format_bytes(per_column_bytes)} per output column "
            f"({outputs} outputs, {n_players} players); raise max_memory, or use a sampling method "
            "('permutation', 'antithetic', 'owen', 'truncated': they run within any bound)"
        )
    width = int(max(1, min(outputs, (solve_room // 2) // per_column_bytes)))
    solve_block = int(max(1, min(natural_block, (solve_room - width * per_column_bytes)
                                 // (rows_per_unit * (per_row_bytes + _SOLVE_ROW_COPIES * _F64 * width)))))
    block = (max_memory - design_bytes - chunk_bytes) // unit_bytes
    if block < 1:
        raise ValueError(
            f"method {method!r} cannot evaluate one unit within max_memory={format_bytes(max_memory)}: its "
            f"{rows_per_unit} game value(s) of {outputs} outputs need {format_bytes(unit_bytes)} besides "
            f"{format_bytes(design_bytes)} of {what}"
        )
    block = int(min(natural_block, block))
    estimate = max(design_bytes + block * unit_bytes,
                   fixed_bytes + held + width * per_column_bytes + solve_block * solve_unit)
    return LinearPlan("spill", block, width, solve_block, result_on_disk, chunk_bytes, max_memory, estimate,
                      rows * outputs * _F64 + (result_bytes if result_on_disk else 0))


def open_spill(state: Any, plan: LinearPlan, rows: int, outputs: int, scratch_dir: Any) -> tuple[ValueSpill, bool]:
    """The run's spill: the one ``state.extra["spill"]`` names when it matches (resume), else a new one.

    Returns ``(spill, resumed)``; a new spill is made in a fresh scratch folder after checking that
    ``rows x outputs x 8`` bytes are free there (ValueError otherwise).
    """
    saved = state.extra.get("spill")
    if isinstance(saved, dict) and ValueSpill.matches(Path(str(saved.get("path"))) / "spill", rows, outputs):
        return ValueSpill(Path(str(saved["path"])) / "spill"), True
    base = Path(scratch_dir) if scratch_dir is not None else None
    folder = scratch_folder(base)
    free = shutil.disk_usage(folder).free
    needed = plan.disk_bytes
    if needed > free:
        shutil.rmtree(folder, ignore_errors=True)
        raise ValueError(f"the spilled game values need {format_bytes(needed)} on disk ({rows} coalitions x "
                         f"{outputs} outputs x 8 B, and the result if on disk) and {folder.parent} has {format_bytes(free)} free; "
                         "pass scratch_dir= on a larger disk")
    state.extra["spill"] = {"path": str(folder)}
    return ValueSpill.create(folder / "spill", rows, outputs, spill_width(plan, rows, outputs)), False


def spill_width(plan: LinearPlan, rows: int, outputs: int) -> int:
    """Output columns per spill file: at least the solve's ``plan.width``, and as many more as keep a
    file (``rows x width x 8`` bytes) within ``plan.chunk_bytes``. Every evaluated block is written
    into every file, so files of one column each (a tight bound's solve width) cost one file opening
    per output per block; the column pass reads ``plan.width`` columns inside one file either way."""
    fit = int(plan.chunk_bytes) // max(1, int(rows) * _F64)
    return int(max(1, min(int(outputs), max(int(plan.width), fit))))


def evaluate_into_spill(
    runner: Any,
    state: Any,
    spill: ValueSpill,
    n_units: int,
    block: int,
    coalitions_of: Callable[[range], tuple[torch.Tensor, int]],
    on_units: Callable[[range, torch.Tensor], None] | None,
    on_block: Callable[[Any], Any] | None,
) -> None:
    """Evaluate units ``state.next_unit .. n_units - 1`` ``block`` at a time into ``spill``.

    ``coalitions_of(units)`` gives bool ``(k, n)`` coalitions and the spill row of the first (the
    others follow); ``on_units(units, coalitions)`` adds their design-only sums. A cancel (raised by
    the runner before any write) leaves the state at the last whole block.
    """
    while state.next_unit < n_units:
        runner.check_cancel()
        units = range(state.next_unit, min(n_units, state.next_unit + block))
        coalitions, row0 = coalitions_of(units)
        if coalitions.shape[0]:
            spill.write(row0, runner(coalitions).reshape(coalitions.shape[0], -1))
        if on_units is not None:
            on_units(units, coalitions)
        state.next_unit = units.stop
        state.n_evaluations = runner.n_evaluations
        if on_block is not None:
            on_block(state)


def solve_by_columns(
    runner: Any,
    spill: ValueSpill,
    plan: LinearPlan,
    n_players: int,
    output_shape: tuple[int, ...],
    solve: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]],
    *,
    stderr: bool,
) -> tuple[Any, Any]:
    """``(values, stderr)`` ``(n_players, *output_shape)`` solved ``plan.width`` columns at a time.

    ``solve(c0, c1)`` returns the values and stderr (or None) ``(n_players, c1 - c0)`` of output
    columns ``c0..c1-1`` from the spill; a cancel takes effect between chunks.
    """
    folder = spill.path.parent if plan.result_on_disk else None  # values/, stderr/ next to spill/
    writer = ColumnWriter(n_players, output_shape, stderr=stderr, folder=folder, chunk_bytes=plan.chunk_bytes)
    run = result_run(plan, n_players, stderr)
    pending: list[tuple[int, int, torch.Tensor, torch.Tensor | None]] = []

    def flush() -> None:
        if pending:
            errors = None if pending[0][3] is None else torch.cat([part[3] for part in pending], dim=1)
            writer.write(pending[0][0], pending[-1][1], torch.cat([part[2] for part in pending], dim=1), errors)
            pending.clear()

    for f0, f1 in spill.chunks:
        for c0 in range(f0, f1, plan.width):
            runner.check_cancel()
            c1 = min(f1, c0 + plan.width)
            values, errors = solve(c0, c1)
            if pending and c1 - pending[0][0] > run:
                flush()
            pending.append((c0, c1, values, errors))
    flush()
    return writer.arrays()


def result_run(plan: LinearPlan, n_players: int, stderr: bool) -> int:
    """Output columns written to the result at once: an on-disk result in runs filling the plan's
    ``chunk_bytes`` (held for it), since each write maps every chunk file of the result; in memory,
    each solve chunk as it comes."""
    if not plan.result_on_disk:
        return plan.width
    return int(max(plan.width, plan.chunk_bytes // ((2 if stderr else 1) * n_players * _F64)))


def finish_spill(spill: ValueSpill, result: Any, plan: LinearPlan) -> Any:
    """Delete the spilled values, record the plan (and any on-disk arrays' folder) in the result."""
    spill.delete()
    result.metadata["memory"] = plan.describe()
    if plan.result_on_disk:  # the run store moves values/ and stderr/ and removes the emptied folder
        result.metadata["arrays"] = str(spill.path.parent)
    else:
        shutil.rmtree(spill.path.parent, ignore_errors=True)
    return result


def unit_blocks(n_units: int, block: int) -> list[range]:
    """``range(0, n_units)`` cut into consecutive ranges of ``block`` units."""
    return [range(start, min(n_units, start + block)) for start in range(0, n_units, max(1, block))]


def output_size(shape: tuple[int, ...]) -> int:
    """Elements of one game value (1 for a scalar game)."""
    return max(1, math.prod(shape))
