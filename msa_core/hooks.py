"""Lesions and recordings applied by forward hooks that never outlive their context.

Hooks (or pre-hooks for ``site="input"``) are registered only inside :func:`lesion_hooks` and
:func:`record_activations`, which remove them in ``finally``: an exception in the middle of a forward
pass leaves no hook behind. A batch of coalitions is run as one forward pass over
``n_coalitions * n_inputs`` rows: rows ``[c * n_inputs, (c + 1) * n_inputs)`` belong to coalition ``c``.
Which units a hook lesions comes from :func:`msa_core.lesion.resolve_units`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from .batch_inputs import forward

if TYPE_CHECKING:
    from .lesion import ResolvedUnits

__all__ = ["record_activations", "lesion_hooks", "apply_lesion"]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if hasattr(value, "last_hidden_state") or hasattr(value, "logits"):
        return getattr(value, "logits", None) if getattr(value, "logits", None) is not None else value.last_hidden_state
    return None


def _replace_first(value: Any, tensor: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return tensor
    if isinstance(value, tuple):
        return (tensor, *value[1:])
    if isinstance(value, list):
        return [tensor, *value[1:]]
    raise TypeError(f"cannot lesion an activation of type {type(value).__name__}")


def record_activations(model: nn.Module, inputs: Any, sites: Mapping[Any, tuple[nn.Module, str]]) -> tuple[dict[Any, torch.Tensor], Any]:
    """One intact forward pass that records the first tensor seen at each site.

    Args:
        model: the model to run (under ``torch.no_grad``).
        inputs: a tensor, a tuple of positional tensors or a dict of keyword tensors.
        sites: key -> (module, "output" | "input"): record the module's output (forward hook) or its
            first positional input (pre-hook). Hooks are removed in ``finally``.

    Returns:
        ``(recorded, output)``: key -> detached tensor from the module's first call (keys whose module
        did not run are absent), and the model's output.
    """
    recorded: dict[Any, torch.Tensor] = {}
    handles = []

    def recorder(key: Any, site: str):
        def hook(module, args, output=None):
            tensor = _first_tensor(args[0] if site == "input" and args else output)
            if tensor is not None and key not in recorded:
                recorded[key] = tensor.detach()

        return hook

    try:
        for key, (module, site) in sites.items():
            if site == "input":
                handles.append(module.register_forward_pre_hook(recorder(key, "input")))
            elif site == "output":
                handles.append(module.register_forward_hook(recorder(key, "output")))
            else:
                raise ValueError(f"site must be 'output' or 'input'; got {site!r}")
        with torch.no_grad():
            output = forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return recorded, output


def _row_mask(unit_mask: torch.Tensor, units: ResolvedUnits, rows_per_coalition: int, ndim: int, device) -> torch.Tensor:
    """``(n_coalitions, n_units)`` bool -> mask broadcastable to the activation of all rows."""
    mask = unit_mask.to(device)
    if units.spec.group_size > 1:
        mask = mask.repeat_interleave(units.spec.group_size, dim=1)
    if rows_per_coalition > 1:
        mask = mask.repeat_interleave(rows_per_coalition, dim=0)
    shape = [mask.shape[0]] + [1] * (ndim - 1)
    shape[units.axis] = units.width
    return mask.reshape(shape)


def apply_lesion(activation: torch.Tensor, row_mask: torch.Tensor, units: ResolvedUnits) -> torch.Tensor:
    """The activation with lesioned entries replaced (``torch.where``: safe with -inf replacements)."""
    if callable(units.lesion):
        replacement = units.lesion(activation)
    else:
        replacement = units.replacement.to(activation.device, activation.dtype)
    return torch.where(row_mask, activation, replacement)


@contextmanager
def lesion_hooks(
    resolved: Sequence[ResolvedUnits],
    masks: Sequence[torch.Tensor],
    rows_per_coalition: int,
) -> Iterator[None]:
    """Hooks that lesion every resolved module for a batch of coalitions, removed on exit.

    Args:
        resolved: the resolved units, one entry per module.
        masks: one bool tensor ``(n_coalitions, n_units)`` per entry of ``resolved`` (True = intact).
        rows_per_coalition: rows of the forward batch that belong to one coalition (the inputs).
    """
    handles = []

    def output_hook(units: ResolvedUnits, unit_mask: torch.Tensor):
        def hook(module, args, output):
            activation = _first_tensor(output)
            mask = _row_mask(unit_mask, units, rows_per_coalition, activation.ndim, activation.device)
            _check_rows(mask, activation, units)
            return _replace_first(output, apply_lesion(activation, mask, units))

        return hook

    def input_hook(units: ResolvedUnits, unit_mask: torch.Tensor):
        def hook(module, args):
            activation = args[0]
            mask = _row_mask(unit_mask, units, rows_per_coalition, activation.ndim, activation.device)
            _check_rows(mask, activation, units)
            return (apply_lesion(activation, mask, units), *args[1:])

        return hook

    try:
        for units, unit_mask in zip(resolved, masks):
            if units.spec.site == "input":
                handles.append(units.module.register_forward_pre_hook(input_hook(units, unit_mask)))
            else:
                handles.append(units.module.register_forward_hook(output_hook(units, unit_mask)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_rows(mask: torch.Tensor, activation: torch.Tensor, units: ResolvedUnits) -> None:
    if mask.shape[0] != activation.shape[0]:
        raise RuntimeError(
            f"layer {units.spec.path!r} saw {activation.shape[0]} rows where {mask.shape[0]} were expected: "
            "the model must keep the batch axis first and not reorder rows"
        )
