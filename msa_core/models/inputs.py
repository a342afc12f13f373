"""Example inputs of a subject: from a ``.npz`` / ``.pt`` file or arrays to tensors, moved to a device,
counted and described for error messages. Inputs are on axis 0 throughout: a tensor ``(n_inputs, ...)``,
a tuple of positional tensors or a dict of keyword tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..batch_inputs import move_inputs
from ..batch_inputs import n_rows as count_rows
from .errors import ModelLoadError

__all__ = ["as_input_tensors", "load_inputs_file", "resolve_inputs", "move_inputs", "n_rows", "describe_inputs"]


def as_input_tensors(value: Any) -> Any:
    """numpy arrays -> tensors (float64 -> float32), recursively through tuples, lists and dicts."""
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.float() if tensor.dtype == torch.float64 else tensor
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {key: as_input_tensors(v) for key, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple(as_input_tensors(v) for v in value)
    raise ModelLoadError(
        f"inputs must be a tensor, an array, a tuple or a dict of them, or a .npz/.pt file path; got {type(value).__name__}"
    )


def load_inputs_file(path: str) -> tuple[Any, torch.Tensor | None]:
    """Inputs (and labels if present) from a ``.npz`` or a ``.pt`` tensor file.

    ``.npz``: the array ``"inputs"`` or ``"x"``, else the first array; labels from ``"labels"`` or ``"y"``.
    ``.pt``: ``torch.load(weights_only=True)``: a tensor, a tuple of tensors, or a dict with ``"inputs"``/
    ``"x"`` (and optional ``"labels"``/``"y"``) or of keyword tensors.

    Returns ``(inputs, labels or None)``; inputs on axis 0.
    """
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"inputs file {str(file)!r} does not exist; give the path of a .npz or .pt tensor file")
    labels = None
    if file.suffix == ".npz":
        try:
            with np.load(file, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except Exception as error:  # noqa: BLE001 - any read failure is reported the same way
            raise ModelLoadError(f"could not read inputs file {str(file)!r} as .npz: {error}") from None
        if not arrays:
            raise ModelLoadError(f"inputs file {str(file)!r} holds no arrays")
        key = next((k for k in ("inputs", "x", "input_ids") if k in arrays), next(iter(arrays)))
        inputs = arrays[key]
        if key == "input_ids" and "attention_mask" in arrays:
            inputs = {"input_ids": arrays["input_ids"], "attention_mask": arrays["attention_mask"]}
        label_key = next((k for k in ("labels", "y") if k in arrays and k != key), None)
        labels = None if label_key is None else torch.as_tensor(arrays[label_key]).long()
        return as_input_tensors(inputs), labels
    if file.suffix in (".pt", ".pth"):
        try:
            value = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001
            raise ModelLoadError(
                f"could not load inputs file {str(file)!r} with torch.load(weights_only=True): {error}. "
                "Save plain tensors (torch.save(tensor, path)) or use a .npz"
            ) from None
        if isinstance(value, dict) and any(k in value for k in ("inputs", "x")):
            key = "inputs" if "inputs" in value else "x"
            label = value.get("labels", value.get("y"))
            labels = None if label is None else torch.as_tensor(label).long()
            value = value[key]
        return as_input_tensors(value), labels
    raise ModelLoadError(f"inputs file {str(file)!r} must be a .npz or a .pt tensor file")


def resolve_inputs(inputs: Any) -> tuple[Any, torch.Tensor | None]:
    """``inputs`` given to :func:`load_subject`: a path (str / Path) or tensors/arrays -> ``(inputs, labels)``."""
    if inputs is None:
        return None, None
    if isinstance(inputs, (str, Path)):
        return load_inputs_file(str(inputs))
    return as_input_tensors(inputs), None


def describe_inputs(inputs: Any) -> str:
    """Shapes and dtypes of ``inputs`` in words, e.g. ``"a (4, 64) float32 tensor"`` (for error messages)."""
    if isinstance(inputs, torch.Tensor):
        return f"a {tuple(inputs.shape)} {str(inputs.dtype).replace('torch.', '')} tensor"
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe_inputs(v) for v in inputs) + ")"
    return type(inputs).__name__


def n_rows(inputs: Any) -> int:
    """Number of inputs (size of axis 0) of a tensor, a tuple or a dict of tensors; a
    :class:`ModelLoadError` for anything else (:func:`msa_core.batch_inputs.n_rows` does the counting)."""
    try:
        return count_rows(inputs)
    except TypeError as error:
        raise ModelLoadError(str(error)) from None
