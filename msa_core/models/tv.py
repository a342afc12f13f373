"""torchvision architectures by name with local weights: ``torchvision:resnet18:/path/weights.pth``.

Only when torchvision imports (it is imported here, lazily, never at ``import msa_core``). The weights file is
a state dict loaded with ``torch.load(path, weights_only=True)`` (or a ``.safetensors`` file). Inputs: a
``.npz``/``.pt`` tensor file, else 8 random images ``(8, 3, 224, 224)`` (seed 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..objectives import class_probability, per_class_accuracy
from .subject import ModelLoadError, Subject, catalogue, fingerprint, move_inputs, run_once

__all__ = ["is_torchvision_ref", "load_torchvision_subject"]

PREFIX = "torchvision:"


def is_torchvision_ref(ref: str) -> bool:
    """True for ``"torchvision:<architecture>[:<weights path>]"``."""
    return ref.startswith(PREFIX)


def load_torchvision_subject(ref: str, *, inputs: Any, labels: torch.Tensor | None, device: str) -> Subject:
    """Subject of ``torchvision:<arch>:<weights>``; default units: the middle top-level block."""
    parts = ref[len(PREFIX):].split(":", 1)
    arch = parts[0]
    weights = parts[1] if len(parts) > 1 and parts[1] else None
    try:
        import torchvision
    except Exception as error:  # noqa: BLE001 - a broken CUDA build raises more than ImportError
        raise ModelLoadError(
            f"{ref!r} needs torchvision, which cannot be imported here ({type(error).__name__}: {error}); install a "
            "torchvision matching your torch, or bring the architecture as a recipe 'file.py:function'"
        ) from None
    try:
        model = torchvision.models.get_model(arch, weights=None)
    except Exception as error:  # noqa: BLE001
        names = ", ".join(sorted(torchvision.models.list_models())[:30])
        raise ModelLoadError(f"torchvision has no architecture {arch!r} ({error}); some valid names: {names}, ...") from None
    if weights is not None:
        file = Path(weights).expanduser()
        if not file.is_file():
            raise ModelLoadError(f"weights file {str(file)!r} does not exist; give torchvision:{arch}:/path/to/weights.pth")
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(file))
            else:
                state = torch.load(file, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # noqa: BLE001
            raise ModelLoadError(
                f"could not load {str(file)!r} as a {arch} state dict (weights_only=True): {type(error).__name__}: {error}"
            ) from None
    model = model.to(device).eval()
    if inputs is None:
        inputs = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    inputs = move_inputs(inputs, device)
    output = run_once(model, inputs, f"torchvision {arch}")
    layers = catalogue(model, inputs, ref)
    n_inputs = int(inputs.shape[0]) if isinstance(inputs, torch.Tensor) else 1
    objectives: dict[str, Any] = {}
    if labels is not None and isinstance(output, torch.Tensor) and output.ndim == 2:
        objectives["per-class accuracy"] = lambda **_: per_class_accuracy(labels, int(output.shape[1]))
    objectives["class probability"] = lambda **_: class_probability(n_inputs)
    objectives["output"] = lambda **_: None
    top = [layer for layer in layers if "." not in layer.path]
    default = top[len(top) // 2].path if top else (layers[0].path if layers else None)
    return Subject(
        ref=ref, name=arch, model=model, inputs=inputs, objectives=objectives,
        default_objective=next(iter(objectives)), layers=layers, default_units=[default] if default else [],
        unit_presets={"top-level blocks": [layer.path for layer in top]}, output_kind="classes",
        description=f"torchvision {arch}" + (f" with weights {weights}" if weights else " (random weights)"),
        fingerprint=fingerprint(model, inputs), device=device,
    )
