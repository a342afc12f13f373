"""The constrained least-squares solve behind the regression estimators (:mod:`.regression`).

Each replicate's normal equations ``(A, B)`` with the efficiency constraint ``sum(m) = gap`` form one
KKT system ``[[A, 1], [1^T, 0]]``; it is solved exactly (LU) where it has full rank and by the
minimum-norm solution where it is singular (fewer distinct coalitions than features).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["solve_constrained"]


def solve_constrained(A: torch.Tensor, B: torch.Tensor, gap: torch.Tensor, factors: dict | None = None) -> torch.Tensor:
    """Coefficients ``(k, p, out)`` minimising each weighted error ``(A[g], B[g])`` (``(k, p, p)``,
    ``(k, p, out)``) subject to ``sum(m) = gap``: one KKT system per replicate; where one
    is singular (fewer distinct coalitions than features), the minimum-norm solution.

    ``factors`` (a dict, kept by the caller across calls with the same ``A``: the bounded path's
    output column chunks) caches each system's LU factors, or its pseudo-inverse where it is
    singular, so that every chunk only substitutes. The choice is made from the matrix alone
    (singular values), so all chunks take the same one: on full-rank systems the solution of the
    path below to rounding, on singular ones the minimum-norm solution (where the path below may
    keep a particular solution that passes its residual check on every output)."""
    k, p = A.shape[0], A.shape[1]
    kkt = torch.zeros((k, p + 1, p + 1), dtype=torch.float64, device=A.device)
    kkt[:, :p, :p] = A
    kkt[:, :p, p] = 1.0
    kkt[:, p, :p] = 1.0
    rhs = torch.cat([B, gap.reshape(1, 1, -1).expand(k, 1, -1)], dim=1)
    # numpy's LAPACK: one gesv per system (torch's batched CPU solve misbehaved with MKL threads)
    kkt_np, rhs_np = kkt.cpu().numpy(), rhs.cpu().numpy()
    solution = np.empty_like(rhs_np)
    for index in range(k):
        if factors is not None:
            if index not in factors:
                factors[index] = _factor(kkt_np[index])
            kind, factor = factors[index]
            if kind == "lu":
                solution[index] = torch.linalg.lu_solve(*factor, torch.from_numpy(rhs_np[index])).numpy()
            else:
                solution[index] = factor @ rhs_np[index]
            continue
        try:
            solution[index] = np.linalg.solve(kkt_np[index], rhs_np[index])
            residual = np.abs(kkt_np[index] @ solution[index] - rhs_np[index]).max()
            if np.isfinite(solution[index]).all() and residual <= 1e-9 * (1.0 + np.abs(rhs_np[index]).max()):
                continue
        except np.linalg.LinAlgError:  # singular: fewer distinct coalitions than features
            pass
        solution[index] = np.linalg.lstsq(kkt_np[index], rhs_np[index], rcond=1e-12)[0]
    return torch.from_numpy(solution[:, :p]).to(A.device)


def _factor(matrix: np.ndarray) -> tuple[str, Any]:
    """``("lu", torch LU factors)`` of a full-rank KKT matrix, else ``("pinv", its pseudo-inverse)`` (rcond 1e-12,
    as the minimum-norm ``lstsq``)."""
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[-1] > 1e-12 * singular[0]:
        return "lu", torch.linalg.lu_factor(torch.from_numpy(matrix))
    return "pinv", np.linalg.pinv(matrix, rcond=1e-12)
