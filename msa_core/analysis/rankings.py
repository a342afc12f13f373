"""Rankings of a game's units for lesion curves, each an int64 order ``(n_players,)``, most important first:
by Shapley value, by mean ``|activation|``, by the L2 norm of the unit's weights, and by the drop when the
unit alone is lesioned (leave-one-out).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ._common import Reduce, as_values, n_players_of, scalar_summary
from .removal import evaluate_coalitions

__all__ = [
    "shapley_ranking",
    "activation_ranking",
    "unit_activations",
    "weight_norm_ranking",
    "leave_one_out_ranking",
]


def shapley_ranking(result: Any, *, output: int | str | None = None, descending: bool = True) -> np.ndarray:
    """Units ordered by Shapley value: int64 ``(n_players,)``.

    Args:
        result: a ShapleyResult, or values ``(n_players, *output_shape)``.
        output: for a vector game, rank by this flat output index; None or "sum" by the sum over
            outputs (the unit's total contribution); "mean" is the same order.
        descending: largest value first (the units whose removal should hurt most); False for the
            ascending order (least helpful, or harmful, units first).
    """
    values = as_values(result)
    flat = values.reshape(values.shape[0], -1)
    if output is None or output in ("sum", "mean"):
        score = flat.sum(1)
    else:
        score = flat[:, int(output)]
    # stable sort on the negated score keeps ties in unit order
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


def unit_activations(game: Any) -> np.ndarray:
    """Mean ``|activation|`` of every player over the game's inputs: float64 ``(n_players,)``.

    Needs a :class:`~msa_core.games.LesionGame` (its ``model``, ``inputs`` and ``resolved`` units). A
    recording hook sits on each unit module during one intact forward pass and is removed in
    ``finally``. A unit's activation is averaged over every axis except its unit axis (inputs,
    positions, pixels); grouped units (``group_size > 1``) average over their group.
    """
    from ..lesion import record_activations

    resolved = getattr(game, "resolved", None)
    if resolved is None or not hasattr(game, "model") or not hasattr(game, "inputs"):
        raise TypeError("activation ranking needs a LesionGame (with .model, .inputs and .resolved)")
    recorded, _ = record_activations(
        game.model, game.inputs, {index: (units.module, units.spec.site) for index, units in enumerate(resolved)}
    )
    means = []
    for index, units in enumerate(resolved):
        activation = recorded[index].to(torch.float64).abs()
        # -inf-free: router logits are finite when intact; guard anyway
        activation = torch.nan_to_num(activation, nan=0.0, posinf=0.0, neginf=0.0)
        moved = activation.movedim(units.axis, -1)
        per_entry = moved.reshape(-1, moved.shape[-1]).mean(0)
        means.append(per_entry.reshape(units.n_units, units.spec.group_size).mean(1))
    return torch.cat(means).cpu().numpy()


def activation_ranking(game: Any, *, descending: bool = True) -> np.ndarray:
    """Units ordered by mean ``|activation|`` over the inputs (largest first): int64 ``(n_players,)``."""
    score = unit_activations(game)
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _unit_norms(module: nn.Module, side: str) -> torch.Tensor:
    """Per-unit L2 norms of a weighted module's weights on its ``"out"`` or ``"in"`` side."""
    weight = module.weight.detach().to(torch.float64)
    transposed = isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    # Linear/Conv weights are (out, in, ...); transposed convolutions store (in, out, ...)
    axis = (0 if side == "out" else 1) if not transposed else (1 if side == "out" else 0)
    moved = weight.movedim(axis, 0)
    return moved.reshape(moved.shape[0], -1).norm(dim=1)


def _flatten_weighted(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _WEIGHTED)]


def _layer_weight_norms(model: nn.Module, path: str, n_units: int, direction: str) -> np.ndarray:
    """Incoming and/or outgoing weight norms of the units at the output of module ``path``.

    Incoming weights: the last weighted (Linear/Conv) module inside the unit module, or else the
    nearest weighted sibling before it in its parent ``nn.Sequential``. Outgoing: the first weighted
    module after it among its siblings (or the parent's siblings). The unit count must match the
    weight's width, or the norms are not derivable and a ValueError says so.
    """
    modules = dict(model.named_modules())
    module = modules[path]
    parent_path, _, name = path.rpartition(".")
    parent = modules[parent_path] if parent_path else model

    def siblings_after(container_path: str, child_name: str) -> list[nn.Module]:
        container = modules[container_path] if container_path else model
        names = [n for n, _ in container.named_children()]
        if child_name not in names:
            return []
        after = [m for n, m in container.named_children()][names.index(child_name) + 1 :]
        found = [w for m in after for w in _flatten_weighted(m)]
        if found or not container_path:
            return found
        up, _, up_name = container_path.rpartition(".")
        return siblings_after(up, up_name)

    incoming_candidates = _flatten_weighted(module)
    if not incoming_candidates and isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        before = [m for n, m in parent.named_children()][: names.index(name)]
        incoming_candidates = [w for m in before for w in _flatten_weighted(m)]
    incoming = incoming_candidates[-1] if incoming_candidates else None
    outgoing_candidates = siblings_after(parent_path, name)
    outgoing = outgoing_candidates[0] if outgoing_candidates else None

    norms = []
    if direction in ("incoming", "both"):
        if incoming is None:
            raise ValueError(f"no Linear/Conv layer feeds the units of {path!r}: incoming weight norms are not derivable")
        norms.append(_unit_norms(incoming, "out"))
    if direction in ("outgoing", "both"):
        if outgoing is None:
            raise ValueError(f"no Linear/Conv layer reads the units of {path!r}: outgoing weight norms are not derivable")
        norms.append(_unit_norms(outgoing, "in"))
    for values in norms:
        if values.shape[0] != n_units:
            raise ValueError(
                f"the weights next to {path!r} have {values.shape[0]} units where the layer has {n_units}: "
                "weight norms are not derivable for this layer"
            )
    result = norms[0]
    for values in norms[1:]:
        result = result * values
    return result.numpy()


def weight_norm_ranking(game: Any, *, direction: str = "outgoing", descending: bool = True) -> np.ndarray:
    """Units ordered by the L2 norm of their weights (largest first): int64 ``(n_players,)``.

    For each unit module of a LesionGame: "incoming" is the norm of the weights that produce the
    unit (row ``i`` of the Linear/Conv before it, e.g. ``W1[i, :]``), "outgoing" the norm of the
    weights that read it (column ``i`` of the next Linear/Conv, e.g. ``W2[:, i]``), "both" their
    product (the scale of the unit's whole path, which is what a piecewise-linear unit transmits).
    Only units on the output of a module (site "output", group size 1) inside ``nn.Sequential``-like
    models are supported; anything else raises ValueError.
    """
    if direction not in ("incoming", "outgoing", "both"):
        raise ValueError(f"direction must be 'incoming', 'outgoing' or 'both'; got {direction!r}")
    resolved = getattr(game, "resolved", None)
    if resolved is None or not hasattr(game, "model"):
        raise TypeError("weight-norm ranking needs a LesionGame (with .model and .resolved)")
    scores = []
    for units in resolved:
        if units.spec.site != "output" or units.spec.group_size != 1:
            raise ValueError(f"weight norms are only derivable for single units on a module's output ({units.spec.path!r})")
        scores.append(_layer_weight_norms(game.model, units.spec.path, units.n_units, direction))
    score = np.concatenate(scores)
    return np.argsort(-score if descending else score, kind="stable").astype(np.int64)


def leave_one_out_ranking(
    game: Callable,
    *,
    n_players: int | None = None,
    reduce: Reduce = None,
    batch_size: int | None = None,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Units ordered by the drop when each alone is lesioned, largest drop first (``n + 1`` evaluations).

    Returns:
        int64 order ``(n_players,)``; with ``return_scores`` also the drops ``v(N) - v(N - {i})``
        ``(n_players,)`` of the scalar summary.
    """
    n = n_players_of(game, n_players)
    coalitions = torch.ones((n + 1, n), dtype=torch.bool)
    coalitions[torch.arange(1, n + 1), torch.arange(n)] = False
    values = scalar_summary(evaluate_coalitions(game, coalitions, n, batch_size), reduce)
    drops = values[0] - values[1:]
    order = np.argsort(-drops, kind="stable").astype(np.int64)
    return (order, drops) if return_scores else order
