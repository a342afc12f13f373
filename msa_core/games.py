"""Games over the units of a PyTorch model: :func:`lesion_game`.

Three evaluation paths, chosen automatically; they give the same values:

1. **Hooks** (any model): the inputs are repeated once per coalition and the whole model runs once per
   batch of coalitions, with forward hooks replacing lesioned units.
2. **Cut** (``nn.Sequential``): everything before the first lesioned top-level child is computed once at
   construction; each batch of coalitions only runs the rest.
3. **Linear chain** (``nn.Sequential`` whose lesioned child is followed by ``nn.Linear``): the linear
   layer's output is ``base + sum_{i in S} C_i`` with ``C_i = W[:, i] (h_i - r_i)``. A coalition is one
   small matrix product, and along a join order the prefix sums make each join O(1) in the layer width
   (``evaluate_permutations``; :mod:`msa_core.games_chain`). Per-class accuracy on this path runs in a
   fused compiled kernel (:mod:`msa_core.kernels`); any other objective, a user's callable included, is called on the
   outputs of hundreds of consecutive joins at once, in the model's dtype.

Objectives not made by this library are checked on every call (one value per coalition, the same
shape each time, real and finite): a bad one fails with one :class:`~msa_core.objectives.ObjectiveError`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .batch_inputs import move_inputs, n_rows, output_tensor
from .games_chain import LinearChainPath
from .lesion import (
    LesionFn,
    ResolvedUnits,
    UnitSpec,
    forward,
    lesion_hooks,
    repeat_rows,
    resolve_units,
)
from .objectives import Identity, Objective, ObjectiveError, as_objective, check_objective_values

__all__ = ["LesionGame", "lesion_game"]

# Elements of activations per forward call when no batch size is given (bounds memory use).
_ELEMENTS_PER_CALL = 2**23

def _children_slice(model: nn.Sequential, start: int, stop: int | None = None) -> nn.Sequential:
    """A plain ``nn.Sequential`` of children ``[start:stop]`` (slicing a Sequential subclass would call
    the subclass's own constructor, which may take other arguments)."""
    return nn.Sequential(*list(model.children())[start:stop])


class LesionGame(LinearChainPath):
    """The game ``v(S)`` = objective of the model with only the units in ``S`` intact.

    Call it on a coalition matrix ``(batch, n_players)`` (True = intact) to get ``(batch, *output_shape)``.
    Use :func:`lesion_game` to build one.

    Attributes:
        n_players: total number of units over all named layers.
        unit_labels: ``"<layer>:<index>"`` for each player.
        output_shape: shape of one game value.
        path: "hooks", "cut" or "linear-chain" (the evaluation path in use).
        preferred_batch_size: coalitions per call that keep one call within memory bounds.
    """

    def __init__(
        self,
        model: nn.Module,
        units: str | UnitSpec | Sequence[str | UnitSpec],
        inputs: Any,
        *,
        objective: Objective | Callable | None = None,
        lesion: str | LesionFn = "zero",
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        fast_paths: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        self.device = _resolve_device(device, model)
        self.model = model.to(self.device).eval()
        self.inputs = move_inputs(inputs, self.device)
        self.n_inputs = n_rows(self.inputs)
        self.objective = as_objective(objective)
        self.batch_size = batch_size
        try:
            self.resolved, intact_output = resolve_units(self.model, units, self.inputs, lesion=lesion)
        except (RuntimeError, TypeError, IndexError) as error:
            if isinstance(error, TypeError) and "lesion" in str(error):
                raise
            raise ValueError(f"the model could not run on these inputs: {error}") from error
        self.n_players = sum(r.n_units for r in self.resolved)
        self.unit_labels = [label for r in self.resolved for label in r.labels()]
        self._offsets = [0]
        for r in self.resolved:
            self._offsets.append(self._offsets[-1] + r.n_units)
        intact = output_tensor(intact_output)
        self.model_output_shape = tuple(intact.shape[1:])
        self.path = "hooks"
        self._suffix: nn.Module = self.model
        self._trunk: Any = self.inputs
        if fast_paths and isinstance(self.model, nn.Sequential):
            self._setup_cut()
        self.output_shape: tuple[int, ...] | None = None  # the probe below sets it
        with torch.no_grad():
            try:
                values = self._score(intact.unsqueeze(0), lambda row: self.n_players)
            except Exception as error:  # noqa: BLE001 - one message naming the objective and its input
                if isinstance(error, ObjectiveError):
                    raise
                raise ObjectiveError(
                    f"the objective {self.objective.name!r} failed on the intact model's outputs of shape "
                    f"{(1, *intact.shape)} (coalitions, inputs, *model_output): {type(error).__name__}: {error}"
                ) from error
        self.output_shape = tuple(values.shape[1:])
        per_coalition = self.n_inputs * max(
            [math.prod(r.activation_shape[1:]) for r in self.resolved] + [math.prod(self.model_output_shape) or 1]
        )
        self.preferred_batch_size = batch_size or max(1, _ELEMENTS_PER_CALL // max(1, 4 * per_coalition))
        if self.path == "linear-chain":
            self.preferred_batch_size = batch_size or max(1, _ELEMENTS_PER_CALL // max(1, 2 * self._chain_row_elements))

    # ------------------------------------------------------------------ setup of fast paths
    def _setup_cut(self) -> None:
        children = list(self.model.named_children())
        first = None
        for index, (name, _) in enumerate(children):
            if any(r.spec.path == name or r.spec.path.startswith(name + ".") for r in self.resolved):
                first = index
                break
        if first is None:
            return
        if any(r.spec.site == "input" and r.spec.path == children[first][0] for r in self.resolved):
            return  # an input-site hook on the cut module needs the module's own call
        with torch.no_grad():
            self._trunk = forward(_children_slice(self.model, 0, first), self.inputs) if first > 0 else self.inputs
        if not isinstance(self._trunk, torch.Tensor):
            self._trunk = self.inputs
            return
        self._suffix = _children_slice(self.model, first)
        self.path = "cut"
        only = self.resolved[0]
        if (
            len(self.resolved) == 1
            and only.spec.path == children[first][0]
            and only.spec.site == "output"
            and only.spec.group_size == 1
            and only.lesion in ("zero", "mean")
            and len(only.activation_shape) == 2
            and first + 1 < len(children)
            and isinstance(children[first + 1][1], nn.Linear)
        ):
            self._setup_linear_chain(first)

    def _setup_linear_chain(self, first: int) -> None:
        units = self.resolved[0]
        linear: nn.Linear = list(self.model.children())[first + 1]
        with torch.no_grad():
            hidden = list(self.model.children())[first](self._trunk)  # (n_inputs, n_units)
            replacement = units.replacement.to(hidden.dtype).expand_as(hidden)
            weight = linear.weight.to(hidden.dtype)  # (out, n_units)
            base = replacement @ weight.T
            if linear.bias is not None:
                base = base + linear.bias
            # contributions[i] = W[:, i] * (h_i - r_i): (n_units, n_inputs, out)
            self._contributions = ((hidden - replacement).T.unsqueeze(2) * weight.T.unsqueeze(1)).contiguous()
            self._base = base.contiguous()  # (n_inputs, out)
        self._rest = _children_slice(self.model, first + 2)
        self._linear_out = linear.out_features
        self._chain_row_elements = self.n_inputs * max(self._linear_out, math.prod(self.model_output_shape))
        self.path = "linear-chain"
        self.evaluate_permutations = self._chain_values

    # ------------------------------------------------------------------ evaluation
    def _split(self, coalitions: torch.Tensor) -> list[torch.Tensor]:
        return [coalitions[:, a:b] for a, b in zip(self._offsets[:-1], self._offsets[1:])]

    def _check(self, coalitions: Any) -> torch.Tensor:
        if not isinstance(coalitions, torch.Tensor) or coalitions.dtype != torch.bool or coalitions.ndim != 2:
            raise ValueError(
                f"coalitions must be a torch.bool tensor of shape (batch, {self.n_players}); "
                f"got {getattr(coalitions, 'dtype', type(coalitions).__name__)} of shape "
                f"{tuple(getattr(coalitions, 'shape', ()))}"
            )
        if coalitions.shape[1] != self.n_players:
            raise ValueError(
                f"coalitions have {coalitions.shape[1]} columns but this game has {self.n_players} players"
            )
        return coalitions.to(self.device)

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        """Game values ``(batch, *output_shape)`` for a coalition matrix ``(batch, n_players)``."""
        coalitions = self._check(coalitions)
        chunks = []
        step = self.batch_size or self.preferred_batch_size
        with torch.no_grad():
            for start in range(0, coalitions.shape[0], step):
                chunk = coalitions[start : start + step]
                if self.path == "linear-chain":
                    chunks.append(self._call_linear(chunk))
                else:
                    chunks.append(self._call_hooks(chunk))
        return torch.cat(chunks) if chunks else torch.empty((0, *self.output_shape))

    def _call_hooks(self, coalitions: torch.Tensor) -> torch.Tensor:
        n = coalitions.shape[0]
        batch = repeat_rows(self._trunk, n)
        with lesion_hooks(self.resolved, self._split(coalitions), self.n_inputs):
            output = output_tensor(forward(self._suffix, batch))
        return self._score(output.reshape(n, self.n_inputs, *output.shape[1:]), lambda row: int(coalitions[row].sum()))

    def _score(self, outputs: torch.Tensor, intact_count: Callable[[int], int]) -> torch.Tensor:
        """Objective values ``(c, *output_shape)`` of model outputs ``(c, n_inputs, *model_output)``.

        Objectives not made by this library are checked (shape, real and finite values) so that a bad
        one fails with one message naming it; ``intact_count(row)`` says how many units row ``row``
        keeps, for that message.
        """
        values = self.objective(outputs)
        if getattr(self.objective, "builtin", False):
            return values
        return check_objective_values(self.objective, values, tuple(outputs.shape), self.output_shape, intact_count)

    def __repr__(self) -> str:
        layers = ", ".join(f"{r.spec.path}[{r.n_units} {r.kind}s]" for r in self.resolved)
        return (
            f"LesionGame({layers}; {self.n_inputs} inputs; objective={self.objective.name}; "
            f"output {self.output_shape}; path={self.path})"
        )


def _resolve_device(device: torch.device | str | None, model: nn.Module) -> torch.device:
    if device is None:
        parameter = next(model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available here; use device='cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but MPS is not available here; use device='cpu'")
    return device


def lesion_game(
    model: nn.Module,
    units: str | UnitSpec | Sequence[str | UnitSpec],
    inputs: Any,
    *,
    objective: Objective | Callable | None = None,
    lesion: str | LesionFn = "zero",
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    fast_paths: bool = True,
    prefix_reuse: bool = True,
) -> LesionGame:
    """A game over the units of ``model``: ``v(S)`` is the objective with only units in ``S`` intact.

    Args:
        model: a ``torch.nn.Module`` (put in eval mode).
        units: a module path (``"2"``, ``"encoder.layer.3.mlp.act"``), a :class:`UnitSpec`, or a list of
            them; the players are all units of all of them, in order. Units lie on the last axis of
            Linear/activation outputs and on axis 1 of convolutional outputs unless a UnitSpec says
            otherwise.
        inputs: a tensor ``(n_inputs, ...)``, a tuple of tensors (positional arguments) or a dict of
            tensors (keyword arguments), all with the inputs on axis 0.
        objective: maps outputs ``(n_coalitions, n_inputs, *model_output)`` to values
            ``(n_coalitions, *game_output)``; None keeps the output itself (modes then have shape
            ``(n_inputs, *model_output)``). See :mod:`msa_core.objectives`.
        lesion: "zero", "mean" (each unit's mean activation over ``inputs``), "skip" (replace with
            -inf: for router logits, so the expert is never chosen) or a callable
            ``activation -> replacement``.
        batch_size: coalitions per forward pass (None: chosen to bound memory). Results do not depend on it.
        device: where the model runs (default: where its parameters are).
        fast_paths: allow the cut and linear-chain paths (False forces hooks on the whole model).
        prefix_reuse: for a Hugging Face decoder whose players all sit at layer L or later, compute the
            hidden states entering layer L once and run only layers L.. per batch of coalitions (same
            values to 1e-5 in float32; see :mod:`msa_core.models.prefix`). Needs ``fast_paths``.

    Returns:
        A :class:`LesionGame`; ``game.n_players`` and ``game.unit_labels`` describe the players.
    """
    game = LesionGame(
        model,
        units,
        inputs,
        objective=objective,
        lesion=lesion,
        batch_size=batch_size,
        device=device,
        fast_paths=fast_paths,
    )
    if prefix_reuse and fast_paths:
        from .models.prefix import prefix_game  # imported late: prefix imports this module

        game = prefix_game(game) or game
    return game
