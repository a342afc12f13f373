"""The bounded ("spill") paths of the linear estimators: regression (kernel, leverage, kadd,
regression_mc) and exact. Memory accounting and the two passes; the plan and the spill itself are
in :mod:`msa_core.bounded_linear`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..bounded_linear import (
    LinearPlan,
    evaluate_into_spill,
    finish_spill,
    linear_plan,
    open_spill,
    output_size,
    solve_by_columns,
    unit_blocks,
)
from .design import DesignOutline, PairedDesign

__all__ = ["regression_outline", "regression_memory_plan", "regression_spill", "exact_memory_plan", "exact_spill", "finish_spill"]

_F64 = 8


# ---------------------------------------------------------------------- regression
def regression_outline(estimator: Any, n_players: int, budget: int, outputs: int) -> DesignOutline:
    """The outline of the design ``estimator.design(n_players, budget, seed, outputs)`` builds (any seed):
    its units and the replicate groups it actually uses, with no coalition drawn (for memory plans
    made before a run: ``auto``'s choice, the cost outlook)."""
    from .regression import GROUP_MEMORY_BYTES

    p = estimator.n_features(n_players)
    groups = max(2, min(estimator.n_groups, GROUP_MEMORY_BYTES // max(1, 8 * p * max(1, int(outputs))) - 1))
    evaluations = estimator.plan(n_players, budget)["evaluations"]
    return PairedDesign.outline(n_players, evaluations, estimator.size_weights(n_players), groups, estimator.paired)


def regression_memory_plan(estimator: Any, design: PairedDesign | DesignOutline, outputs: int, max_memory: int, checkpoints: bool,
                           *, force_spill: bool = False) -> LinearPlan:
    """The :class:`LinearPlan` of a regression run on ``design`` (see :func:`linear_plan` for the terms).

    Counted from the code: the sums ``A (G+1, p, p)`` (and ``K (G+1, n, p)``) with the solve's
    held-out copy, the KKT matrices in torch and numpy and their factors, a checkpoint's copy; per output column ``B``
    (and ``U``) with their held-out copy, right-hand sides, solutions and the replicates.
    """
    n, p = design.n, estimator.n_features(design.n)
    groups = design.n_groups
    slots = groups + 1
    mc = estimator.mc_correction
    copy = 1 if checkpoints else 0
    design_sums = _F64 * slots * (p * p + (n * p if mc else 0))
    # KKT matrices in torch and numpy, their cached factors, and an SVD's two factors where one is singular
    fixed = design_sums * (2 + copy) + 5 * _F64 * slots * (p + 1) ** 2
    per_column = _F64 * (slots * p * (4 + copy) + (slots * n * (3 + copy) if mc else 0)
                         + 3 * slots * (p + 1) + 4 * max(1, groups) * n + 3 * n)
    per_row = _F64 * (3 * p + (2 * n if mc else 0)) + n
    paired = design.paired
    return linear_plan(
        estimator.name, outputs=outputs, n_players=n, rows=(2 if paired else 1) * design.n_pairs,
        rows_per_unit=2 if paired else 1, natural_block=estimator.pairs_per_block(n, outputs), fixed_bytes=fixed,
        design_bytes=design_sums * (1 + copy), per_column_bytes=per_column, per_row_bytes=per_row,
        max_memory=max_memory, stderr=True, force_spill=force_spill,
        what=f"the normal equations ({slots} replicate slots of {p} x {p} features)",
    )


def _interleaved(design: PairedDesign, units: range) -> tuple[torch.Tensor, torch.Tensor]:
    """The coalitions of ``units`` in spill order (pair ``k``: rows ``2k``, ``2k + 1``) and their groups."""
    coalitions, groups = design.coalitions(units)
    if not design.paired:
        return coalitions, groups
    k = len(units)
    return (coalitions.view(2, k, -1).transpose(0, 1).reshape(2 * k, -1),
            groups.view(2, k).transpose(0, 1).reshape(-1))


def regression_spill(
    estimator: Any,
    runner: Any,
    design: PairedDesign,
    state: Any,
    empty: torch.Tensor,
    gap: torch.Tensor,
    plan: LinearPlan,
    scratch_dir: Any,
    on_block: Callable[[Any], Any] | None,
) -> tuple[Any, Any, Any]:
    """``(values, stderr, spill)`` of a regression run in "spill" mode (``(n, *output)`` each).

    Pass 1 evaluates the design into the spill and accumulates the design-only sums ``A`` (``K``);
    pass 2 accumulates ``B`` (``U``) and solves, ``plan.width`` output columns at a time.
    """
    n, p, per = design.n, estimator.n_features(design.n), 2 if design.paired else 1
    outputs = output_size(tuple(empty.shape))
    design_names = ("A", "K") if estimator.mc_correction else ("A",)
    spill, resumed = open_spill(state, plan, per * design.n_pairs, outputs, scratch_dir)
    if not resumed or any(name not in state.extra for name in design_names):
        # a fresh spill: the evaluation pass starts over (the endpoints are kept)
        state.next_unit, state.n_evaluations = 0, 2
        runner.n_evaluations = 2
        for name in ("A", "B", "U", "K"):
            state.extra.pop(name, None)
        fresh = estimator._new_sums(n, p, design.n_groups, 0, runner.device)
        state.extra.update({name: fresh[name] for name in design_names})
    sums = {name: state.extra[name].to(runner.device, torch.float64) for name in design_names}

    def coalitions_of(units: range) -> tuple[torch.Tensor, int]:
        return _interleaved(design, units)[0], per * units.start

    def on_units(units: range, coalitions: torch.Tensor) -> None:
        estimator._accumulate(sums, coalitions, _interleaved(design, units)[1], None, design, parts=design_names)
        state.extra.update(sums)

    evaluate_into_spill(runner, state, spill, design.n_pairs, plan.block, coalitions_of, on_units, on_block)
    empty_flat = empty.reshape(-1)
    blocks = unit_blocks(design.n_pairs, plan.solve_block)
    factors: dict = {}  # the KKT systems do not depend on the outputs: factor them once

    def solve(c0: int, c1: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = c1 - c0
        chunk = dict(sums)
        chunk["B"] = torch.zeros((design.n_groups + 1, p, width), dtype=torch.float64, device=runner.device)
        if estimator.mc_correction:
            chunk["U"] = torch.zeros((design.n_groups + 1, n, width), dtype=torch.float64, device=runner.device)
        for units in blocks:
            coalitions, groups = _interleaved(design, units)
            y = spill.read(per * units.start, per * units.stop, c0, c1).to(runner.device) - empty_flat[c0:c1]
            estimator._accumulate(chunk, coalitions, groups, y, design, parts=("B", "U"))
        return estimator.solve_outputs(chunk, design, gap[c0:c1], factors)

    values, stderr = solve_by_columns(runner, spill, plan, n, tuple(empty.shape), solve, stderr=True)
    return values, stderr, spill


# ---------------------------------------------------------------------- exact
def exact_memory_plan(n_players: int, outputs: int, natural_block: int, max_memory: int, checkpoints: bool,
                      *, force_spill: bool = False) -> LinearPlan:
    """The :class:`LinearPlan` of an exact run: ``phi (n, outputs)`` (and a checkpoint's copy) per column,
    the block's Shapley weights ``(rows, n)`` per row; units are coalitions."""
    copy = 1 if checkpoints else 0
    return linear_plan(
        "exact", outputs=outputs, n_players=n_players, rows=2**n_players - 2, rows_per_unit=1,
        natural_block=natural_block, fixed_bytes=0, design_bytes=0,
        per_column_bytes=_F64 * n_players * (3 + copy), per_row_bytes=_F64 * 2 * n_players + n_players,
        max_memory=max_memory, stderr=False, force_spill=force_spill, what="phi",
    )


def exact_spill(
    runner: Any,
    n: int,
    state: Any,
    empty: torch.Tensor,
    intact: torch.Tensor,
    weights_of: Callable[[torch.Tensor], torch.Tensor],
    w_end: tuple[float, float],
    plan: LinearPlan,
    scratch_dir: Any,
    on_block: Callable[[Any], Any] | None,
) -> tuple[Any, Any]:
    """``(values, spill)`` of an exact run in "spill" mode: coalition codes ``1 .. 2^n - 2`` (spill row
    ``code - 1``) evaluated into the spill, then ``phi[:, chunk] = W^T v[:, chunk]`` by column chunks.

    ``weights_of(coalitions)`` gives the Shapley weights ``(rows, n)``; ``w_end`` the weights of
    ``v(N)`` and ``v(empty)``.
    """
    from .exact import all_coalitions

    rows = 2**n - 2
    outputs = output_size(tuple(empty.shape))
    spill, resumed = open_spill(state, plan, rows, outputs, scratch_dir)
    if not resumed:
        state.next_unit, state.n_evaluations = 0, 2
        runner.n_evaluations = 2
        state.extra.pop("phi", None)

    def coalitions_of(units: range) -> tuple[torch.Tensor, int]:
        return all_coalitions(n, units.start + 1, units.stop + 1), units.start

    evaluate_into_spill(runner, state, spill, rows, plan.block, coalitions_of, None, on_block)
    blocks = unit_blocks(rows, plan.solve_block)
    intact_flat, empty_flat = intact.reshape(-1), empty.reshape(-1)

    def solve(c0: int, c1: int) -> tuple[torch.Tensor, None]:
        phi = (w_end[0] * intact_flat[c0:c1]).unsqueeze(0).repeat(n, 1)
        phi -= w_end[1] * empty_flat[c0:c1].unsqueeze(0)
        for units in blocks:
            weights = weights_of(all_coalitions(n, units.start + 1, units.stop + 1)).to(runner.device)
            phi += weights.T @ spill.read(units.start, units.stop, c0, c1).to(runner.device)
        return phi, None

    values, _ = solve_by_columns(runner, spill, plan, n, tuple(empty.shape), solve, stderr=False)
    return values, spill
