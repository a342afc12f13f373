"""Model inputs on axis 0 (a tensor ``(n_inputs, ...)``, a tuple of positional tensors or a dict of
keyword tensors): call a model on them, repeat them per coalition, move them to a device, count them,
and read the tensor out of what the model returns.

The one implementation of these walks: :mod:`msa_core.lesion`, :mod:`msa_core.games` and
:mod:`msa_core.models.inputs` use (and re-export) them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["forward", "repeat_rows", "move_inputs", "n_rows", "output_tensor"]


def forward(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on inputs given as a tensor, a tuple of positional tensors, or a dict of kwargs."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def repeat_rows(inputs: Any, times: int) -> Any:
    """Inputs repeated ``times`` along the batch axis (coalition-major), for tensors, tuples or dicts."""
    if isinstance(inputs, torch.Tensor):
        return inputs.repeat(times, *([1] * (inputs.ndim - 1)))
    if isinstance(inputs, dict):
        return {key: repeat_rows(value, times) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(repeat_rows(value, times) for value in inputs)
    return inputs


def move_inputs(inputs: Any, device: torch.device | str) -> Any:
    """Inputs moved to ``device`` (tensors, tuples, dicts; anything else is returned as it is)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {key: move_inputs(value, device) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move_inputs(value, device) for value in inputs)
    return inputs


def n_rows(inputs: Any) -> int:
    """Number of inputs (size of axis 0) of a tensor, a tuple or a dict of tensors.

    Raises TypeError for anything else (an empty tuple included); :func:`msa_core.models.inputs.n_rows`
    turns it into a :class:`~msa_core.models.errors.ModelLoadError`.
    """
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, dict):
        return n_rows(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)) and inputs:
        return n_rows(inputs[0])
    raise TypeError(f"inputs must be a tensor, a tuple of tensors or a dict of tensors; got {type(inputs).__name__}")


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor of a model's output: the output itself, its ``.logits``, or the first of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected a tensor (or an output with .logits)")
