"""Checks and facts every loader needs about a loaded model: its fingerprint (the run key's model part),
whether the asked-for device exists, one forward pass on the example inputs, whether the batch size was
fixed at export, and the lesionable-layer catalogue. Each failure is a one-line :class:`ModelLoadError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..lesion import LayerInfo, forward, list_layers
from .errors import ModelLoadError
from .inputs import describe_inputs, n_rows

__all__ = ["fingerprint", "check_device", "run_once", "batch_is_static", "catalogue"]


def _hash_tensor(digest: "hashlib._Hash", tensor: torch.Tensor) -> None:
    tensor = tensor.detach()
    digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.contiguous()
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())


def _hash_inputs(digest: "hashlib._Hash", inputs: Any) -> None:
    if isinstance(inputs, torch.Tensor):
        _hash_tensor(digest, inputs)
    elif isinstance(inputs, dict):
        for key, value in inputs.items():
            digest.update(str(key).encode())
            _hash_inputs(digest, value)
    elif isinstance(inputs, (tuple, list)):
        for value in inputs:
            _hash_inputs(digest, value)
    else:
        digest.update(repr(inputs).encode())


def fingerprint(model: nn.Module, inputs: Any) -> str:
    """sha256 hex over the model's class name, ``str(model)``, every state-dict tensor (key order) and the inputs."""
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    digest.update(str(model).encode())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            _hash_tensor(digest, value)
    _hash_inputs(digest, inputs)
    return digest.hexdigest()


def check_device(device: str | torch.device | None) -> str:
    """Validate ``device`` (None -> "cpu"); :class:`ModelLoadError` if it is not present here."""
    if device is None:
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ModelLoadError(f"device {device!r} is not a valid torch device ({error}); use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {str(device)!r} was asked for but no CUDA GPU is available here; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelLoadError(
            f"device {str(device)!r} was asked for but only {torch.cuda.device_count()} CUDA device(s) exist here"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' was asked for but MPS is not available here; use device='cpu'")
    return str(dev)


def run_once(model: nn.Module, inputs: Any, what: str) -> Any:
    """One forward pass on ``inputs`` without gradients; :class:`ModelLoadError` naming the input shapes if the
    model rejects them."""
    try:
        with torch.no_grad():
            return forward(model, inputs)
    except Exception as error:  # noqa: BLE001 - any failure here means the inputs do not fit
        raise ModelLoadError(
            f"{what} rejected the example inputs ({describe_inputs(inputs)}): {type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}. Give inputs of the shape and dtype "
            "the model expects, with the inputs on axis 0"
        ) from None


def batch_is_static(model: nn.Module, inputs: Any) -> bool:
    """True when the model fails on the inputs repeated twice along axis 0 (a program exported with a static
    batch size); games on it then run one coalition per forward pass."""
    from ..lesion import repeat_rows

    try:
        with torch.no_grad():
            forward(model, repeat_rows(inputs, 2))
        return False
    except Exception:  # noqa: BLE001
        return True


def catalogue(model: nn.Module, inputs: Any, what: str) -> list[LayerInfo]:
    """:func:`msa_core.list_layers` with failures turned into :class:`ModelLoadError`."""
    try:
        layers = list_layers(model, inputs)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"could not list the layers of {what}: {type(error).__name__}: {error}") from None
    rows = n_rows(inputs)
    # a layer whose first axis is not the inputs (position embeddings, token-flattened MoE internals) cannot be
    # lesioned per coalition
    return [layer for layer in layers if layer.output_shape and layer.output_shape[0] == rows]
