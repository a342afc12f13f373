"""How concentrated a network's computation is: few hubs or many contributors.

Dixit et al. (2025) measure it with an *index of distributed computation* and a *hub share*:

* Mean contribution of unit ``i``: ``c_i = mean_o phi_i[o]`` (its mode averaged over the outputs,
  e.g. over the ten digits); per output ``o``, simply ``c_i = phi_i[o]``.
* ``p_i = c_i^2 / sum_j c_j^2`` and the index ``D = -sum_i p_i log p_i / log n`` (terms with
  ``p_i = 0`` count 0). ``D = 1`` when all units contribute equally in magnitude, ``D = 0`` when one
  unit does everything.
* Hub share: the smallest fraction of units whose ``|c_i|`` (largest first) add up to 80% of
  ``sum_i |c_i|``. Small = a few hubs carry the computation.

Regularisation (L1 most, then L2) concentrates computation: the paper finds ``D`` about 0.60 (L1),
0.67 (L2) and 0.77 (none) for 200 hidden units.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._common import as_values

__all__ = [
    "mean_contributions",
    "distributed_index",
    "hub_share",
    "concentration_table",
]


def mean_contributions(result: Any, output: int | None = None) -> np.ndarray:
    """``c`` float64 ``(n_players,)``: each unit's mode averaged over outputs (or at one flat output)."""
    values = as_values(result)
    flat = values.reshape(values.shape[0], -1)
    return flat.mean(1) if output is None else flat[:, int(output)]


def distributed_index(contributions: Any) -> float:
    """Normalised Shannon entropy of squared contributions, in [0, 1].

    Args:
        contributions: ``c`` ``(n_players,)`` (e.g. from :func:`mean_contributions`).

    Returns:
        ``-sum p log p / log n`` with ``p = c^2 / sum c^2``; NaN when every ``c`` is 0 or ``n < 2``.
    """
    c = np.asarray(contributions, dtype=np.float64).reshape(-1)
    total = float((c**2).sum())
    if len(c) < 2 or total == 0.0:
        return float("nan")
    p = c**2 / total
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum() / np.log(len(c)))


def hub_share(contributions: Any, share: float = 0.8) -> float:
    """Smallest fraction of units whose ``|c|`` (largest first) reaches ``share`` of ``sum |c|``.

    Returns a number in ``(0, 1]``; NaN when every contribution is 0.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    c = np.sort(np.abs(np.asarray(contributions, dtype=np.float64).reshape(-1)))[::-1]
    total = c.sum()
    if total == 0:
        return float("nan")
    # tiny tolerance: a cumulative sum that equals the target in exact arithmetic counts as reached
    k = int(np.searchsorted(np.cumsum(c), share * total * (1 - 1e-12))) + 1
    return min(k, len(c)) / len(c)


def concentration_table(
    result: Any, *, output_labels: Sequence[str] | None = None, share: float = 0.8
) -> pd.DataFrame:
    """Index of distributed computation and hub share, for the whole run and per output.

    Args:
        result: a ShapleyResult or values ``(n_players, *output_shape)``.
        output_labels: names of the flat outputs (default "0", "1", ...).
        share: the share of summed absolute contribution for the hub share (default 80%).

    Returns:
        DataFrame indexed by ``"all"`` then each output label, columns ``distributed_index``,
        ``hub_share`` and ``n_hubs`` (the unit count behind the hub share).
    """
    values = as_values(result)
    n = values.shape[0]
    flat = values.reshape(n, -1)
    labels = list(output_labels) if output_labels is not None else [str(o) for o in range(flat.shape[1])]
    if len(labels) != flat.shape[1]:
        raise ValueError(f"{len(labels)} output labels for {flat.shape[1]} outputs")
    rows = {"all": flat.mean(1)}
    if flat.shape[1] > 1:
        rows.update({label: flat[:, o] for o, label in enumerate(labels)})
    table = pd.DataFrame(
        {
            "distributed_index": [distributed_index(c) for c in rows.values()],
            "hub_share": [hub_share(c, share) for c in rows.values()],
        },
        index=pd.Index(list(rows), name="output"),
    )
    table["n_hubs"] = np.round(table["hub_share"] * n).astype("Int64")
    return table
