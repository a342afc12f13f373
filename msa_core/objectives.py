"""Objectives: what a lesioned model is scored on.

An objective maps the model's outputs for a batch of coalitions, shape
``(n_coalitions, n_inputs, *model_output)``, to game values ``(n_coalitions, *game_output)``.

*Additive* objectives are sums of per-input shares (accuracy per class, mean probabilities): called
with ``index`` (a slice of the inputs) they return that slice's share, so a game can stream over
tiles of inputs and add the shares. This keeps the working set in cache on the fast paths.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "Objective",
    "Identity",
    "FunctionObjective",
    "PerClassAccuracy",
    "ClassProbability",
    "TokenLogProb",
    "per_class_accuracy",
    "class_probability",
    "token_log_prob",
    "as_objective",
    "check_objective_values",
    "ObjectiveError",
]


class Objective:
    """Base of objectives.

    Attributes:
        name: short name shown in the app and stored with runs.
        additive: True when the value is the sum over inputs of per-input shares and ``__call__``
            accepts ``index`` (a slice of inputs) to return that slice's share.
        output_labels: optional labels of the game's outputs (e.g. class names).
        builtin: True for this library's objectives, whose values games need not check.
    """

    name = "objective"
    additive = False
    builtin = False
    output_labels: list[str] | None = None

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        """``(n_coalitions, n_inputs, *model_output)`` -> ``(n_coalitions, *game_output)``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (for run keys and display)."""
        return {"name": self.name}


class Identity(Objective):
    """The model output itself: Shapley modes have the shape ``(n_inputs, *model_output)``."""

    name = "output"
    builtin = True

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        return outputs


class FunctionObjective(Objective):
    """Wraps a user function ``f(outputs) -> values`` (not additive)."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "custom")

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        return self.function(outputs)


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n_inputs, n_classes)``: 1 / count(class) where the input has that label, else 0."""
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
    counts = onehot.sum(0)
    return onehot / counts.clamp_min(1)


class PerClassAccuracy(Objective):
    """Per-class accuracy: the fraction of each class's inputs whose top logit is their label.

    Game output: ``(n_classes,)`` (the paper's per-digit accuracy). A tie for the top logit counts
    as correct. Classes with no input get accuracy 0.

    Args:
        labels: int tensor ``(n_inputs,)``.
        n_classes: number of classes (default ``labels.max() + 1``).
        class_names: optional names for display.
    """

    name = "per-class accuracy"
    builtin = True
    additive = True

    def __init__(self, labels: torch.Tensor, n_classes: int | None = None, class_names: Sequence[str] | None = None) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D (n_inputs,); got shape {tuple(self.labels.shape)}")
        self.n_classes = int(n_classes if n_classes is not None else int(self.labels.max()) + 1)
        self.weights = _class_weights(self.labels, self.n_classes)
        self.output_labels = list(class_names) if class_names is not None else [str(c) for c in range(self.n_classes)]

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        labels = self.labels[index].to(outputs.device)
        if outputs.shape[-1] < self.n_classes or outputs.shape[-2] != labels.shape[0]:
            raise ValueError(
                f"per-class accuracy needs outputs (coalitions, {labels.shape[0]}, >= {self.n_classes} classes); "
                f"got {tuple(outputs.shape)}"
            )
        # amax + gather is much faster than argmax on a short class axis
        top = outputs.amax(-1)
        target = outputs.gather(-1, labels.view(1, -1, 1).expand(outputs.shape[0], -1, 1)).squeeze(-1)
        correct = (target >= top).to(torch.float64)
        return correct @ self.weights[index].to(outputs.device)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n_classes": self.n_classes, "labels": self.labels.tolist()}


class ClassProbability(Objective):
    """Mean softmax probability of each class over the inputs: game output ``(n_classes,)``."""

    name = "class probability"
    builtin = True
    additive = True

    def __init__(self, n_inputs: int, class_names: Sequence[str] | None = None) -> None:
        self.n_inputs = n_inputs
        self.output_labels = list(class_names) if class_names is not None else None

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        return outputs.to(torch.float64).softmax(-1).sum(1) / self.n_inputs


class TokenLogProb(Objective):
    """Log-probability of target tokens: game output ``(n_inputs, n_positions)``.

    ``outputs`` are logits ``(coalitions, n_inputs, n_positions, vocab)``; ``targets`` int
    ``(n_inputs, n_positions)``; positions where ``mask`` is False get 0.
    """

    name = "token log-probability"
    builtin = True

    def __init__(self, targets: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.targets = torch.as_tensor(targets, dtype=torch.int64)
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        targets = self.targets[index].to(outputs.device)
        logp = outputs.to(torch.float64).log_softmax(-1)
        picked = logp.gather(-1, targets.unsqueeze(0).unsqueeze(-1).expand(outputs.shape[0], -1, -1, 1)).squeeze(-1)
        if self.mask is not None:
            picked = picked * self.mask[index].to(outputs.device)
        return picked


def per_class_accuracy(labels: Any, n_classes: int | None = None, class_names: Sequence[str] | None = None) -> PerClassAccuracy:
    """Objective: per-class accuracy vector ``(n_classes,)`` given labels ``(n_inputs,)``."""
    return PerClassAccuracy(torch.as_tensor(labels), n_classes, class_names)


def class_probability(n_inputs: int, class_names: Sequence[str] | None = None) -> ClassProbability:
    """Objective: mean class probabilities ``(n_classes,)`` over ``n_inputs`` inputs."""
    return ClassProbability(n_inputs, class_names)


def token_log_prob(targets: Any, mask: Any = None) -> TokenLogProb:
    """Objective: per-token log-probability of ``targets`` ``(n_inputs, n_positions)``."""
    return TokenLogProb(torch.as_tensor(targets), None if mask is None else torch.as_tensor(mask))


def as_objective(objective: Objective | Callable | None) -> Objective:
    """None -> :class:`Identity`; an Objective as is; a plain callable wrapped."""
    if objective is None:
        return Identity()
    if isinstance(objective, Objective):
        return objective
    if callable(objective):
        return FunctionObjective(objective)
    raise TypeError(f"objective must be an Objective, a callable or None; got {type(objective).__name__}")



class ObjectiveError(ValueError):
    """An objective returned something a game cannot use (wrong type or shape, NaN) or failed."""


def check_objective_values(
    objective: Objective,
    values: Any,
    outputs_shape: tuple[int, ...],
    output_shape: tuple[int, ...] | None,
    intact_count: Callable[[int], int] | None = None,
) -> torch.Tensor:
    """``values`` as a tensor ``(c, *output_shape)``, or one :class:`ObjectiveError` saying what is wrong.

    Args:
        objective: the objective that produced ``values`` (named in the message).
        values: what it returned for model outputs of shape ``outputs_shape`` ``(c, n_inputs, ...)``;
            a numpy array is accepted and converted.
        output_shape: the value shape seen on the intact model (None while probing it).
        intact_count: ``row -> units intact in that coalition``, quoted when a value is not finite.
    """
    name = getattr(objective, "name", "custom")
    n = outputs_shape[0]
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        raise ObjectiveError(
            f"the objective {name!r} must return a torch.Tensor of shape ({n}, ...) for outputs of shape "
            f"{outputs_shape}; it returned {type(values).__name__}"
        )
    if values.ndim == 0 or values.shape[0] != n or (output_shape is not None and tuple(values.shape[1:]) != output_shape):
        wanted = f"({n}, *value_shape)" if output_shape is None else str((n, *output_shape))
        raise ObjectiveError(
            f"the objective {name!r} returned shape {tuple(values.shape)} for outputs of shape {outputs_shape} "
            f"(coalitions, inputs, ...); it must return {wanted}: one value per coalition, of the same shape "
            "for every call (reduce over the inputs on axis 1, keep the coalitions on axis 0)"
        )
    if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64, torch.bool)):
        raise ObjectiveError(f"the objective {name!r} must return real numbers; it returned dtype {values.dtype}")
    finite = torch.isfinite(values.reshape(n, -1)).all(1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        where = f"; the first has {intact_count(row)} units intact" if intact_count is not None else ""
        raise ObjectiveError(
            f"the objective {name!r} returned NaN or infinity for {int((~finite).sum())} of {n} coalitions{where}. "
            "Check it for divisions by zero or log(0) when many units are lesioned."
        )
    return values
