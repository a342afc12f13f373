"""Units addressed by module path: unit specifications bound to a model, and the layer catalogue.

A *unit specification* names a module (its path in ``model.named_modules()``) and where its units
lie: on which axis of the module's output (or input) tensor, in groups of how many entries. The
defaults follow the module: channels (axis 1) for convolutional outputs, the last axis otherwise.

Lesions are applied by forward hooks that never outlive their context (:mod:`msa_core.hooks`;
:func:`lesion_hooks` and :func:`record_activations` stay importable from here).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .batch_inputs import forward, repeat_rows  # noqa: F401 - importable from here, as before
from .hooks import apply_lesion, lesion_hooks, record_activations  # noqa: F401 - likewise

__all__ = [
    "UnitSpec",
    "ResolvedUnits",
    "LayerInfo",
    "LesionFn",
    "resolve_module",
    "resolve_units",
    "lesion_hooks",
    "list_layers",
    "record_activations",
    "forward",
    "repeat_rows",
]

LesionFn = Callable[[torch.Tensor], torch.Tensor]
"""A custom lesion: takes the intact activation and returns the replacement (same or broadcast shape)."""

_CHANNEL_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.GroupNorm,
)
_LESIONS = ("zero", "mean", "skip")


@dataclass(frozen=True)
class UnitSpec:
    """Where the units of one module lie.

    Attributes:
        path: module path as in ``model.named_modules()`` (e.g. ``"2"``, ``"encoder.layer.3.mlp.act"``).
        axis: axis of the activation holding the units (batch is axis 0); None infers it: 1 for
            convolutional/batch-norm outputs and 4-D tensors, -1 otherwise.
        site: "output" (the module's output, via a forward hook) or "input" (its first positional
            input, via a pre-hook; e.g. attention heads before the output projection).
        group_size: entries per unit along ``axis`` (e.g. the head dimension for attention heads).
        kind: "neuron", "channel", "head", "expert" or None (inferred: channel or neuron).
        lesion: default lesion for these units ("zero", "mean", "skip" or None for the game's).
        label: short label used in unit labels (default: the path).
    """

    path: str
    axis: int | None = None
    site: str = "output"
    group_size: int = 1
    kind: str | None = None
    lesion: str | None = None
    label: str | None = None


@dataclass
class ResolvedUnits:
    """A :class:`UnitSpec` bound to a model: the module, the axis, the count, the replacement.

    Attributes:
        spec: the specification.
        module: the module the hook goes on.
        axis: non-negative axis of the activation that holds units.
        n_units: number of units (players) in this module.
        activation_shape: shape of the activation for the example inputs, batch included.
        kind: unit kind.
        lesion: "zero", "mean", "skip" or a callable.
        replacement: precomputed replacement tensor (broadcastable to one row), or None.
    """

    spec: UnitSpec
    module: nn.Module
    axis: int
    n_units: int
    activation_shape: tuple[int, ...]
    kind: str
    lesion: str | LesionFn
    replacement: torch.Tensor | None = None

    @property
    def width(self) -> int:
        """Entries along the unit axis (``n_units * group_size``)."""
        return self.n_units * self.spec.group_size

    def labels(self) -> list[str]:
        """One label per unit, ``"<label or path>:<index>"``."""
        prefix = self.spec.label or self.spec.path
        return [f"{prefix}:{i}" for i in range(self.n_units)]


@dataclass
class LayerInfo:
    """One row of a layer catalogue (see :func:`list_layers`)."""

    path: str
    module_type: str
    output_shape: tuple[int, ...]
    unit_kind: str
    n_units: int
    axis: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_spec(self) -> UnitSpec:
        """The :class:`UnitSpec` that lesions this layer's units (experts are skipped, not zeroed)."""
        return UnitSpec(
            path=self.path,
            axis=self.axis,
            kind=self.unit_kind,
            lesion="skip" if self.unit_kind == "expert" else None,
        )


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path``; a ValueError naming close matches when there is none."""
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
    raise ValueError(
        f"the model has no layer {path!r}.{hint} Layers are named as in model.named_modules(): {shown}. "
        "msa_core.list_layers(model, inputs) lists them with their unit counts."
    )


def _as_spec(unit: str | UnitSpec) -> UnitSpec:
    if isinstance(unit, UnitSpec):
        return unit
    if isinstance(unit, str):
        return UnitSpec(path=unit)
    raise TypeError(f"a unit must be a module path (str) or a UnitSpec; got {type(unit).__name__}")


def _default_axis(module: nn.Module, activation: torch.Tensor) -> int:
    if isinstance(module, _CHANNEL_MODULES) or activation.ndim == 4:
        return 1
    return activation.ndim - 1


def resolve_units(
    model: nn.Module,
    units: str | UnitSpec | Sequence[str | UnitSpec],
    inputs: Any,
    *,
    lesion: str | LesionFn = "zero",
) -> tuple[list[ResolvedUnits], Any]:
    """Bind unit specifications to ``model`` by running it once on ``inputs``.

    Returns the resolved units (in player order) and the intact model output. For ``lesion="mean"``
    the replacement is each unit's mean activation over the inputs (per position: the mean over the
    batch axis only, so a channel keeps its mean spatial map and a token position its mean vector).
    """
    specs = [_as_spec(units)] if isinstance(units, (str, UnitSpec)) else [_as_spec(u) for u in units]
    if not specs:
        raise ValueError("no units given: name at least one layer path")
    if len({(s.path, s.site) for s in specs}) != len(specs):
        raise ValueError("the same layer is named twice in units")
    modules = [resolve_module(model, spec.path) for spec in specs]
    recorded, output = record_activations(
        model, inputs, {index: (module, spec.site) for index, (spec, module) in enumerate(zip(specs, modules))}
    )

    resolved = []
    for index, (spec, module) in enumerate(zip(specs, modules)):
        if index not in recorded:
            raise ValueError(
                f"layer {spec.path!r} did not run (or produced no tensor) in the forward pass on these "
                "inputs, so it has no units to lesion"
            )
        activation = recorded[index]
        if activation.ndim < 2:
            raise ValueError(f"layer {spec.path!r} produced a tensor of shape {tuple(activation.shape)}: no unit axis")
        axis = spec.axis if spec.axis is not None else _default_axis(module, activation)
        axis = axis % activation.ndim
        if axis == 0:
            raise ValueError(f"axis 0 of layer {spec.path!r} is the batch axis; units must lie on another axis")
        width = activation.shape[axis]
        if spec.group_size < 1 or width % spec.group_size:
            raise ValueError(
                f"layer {spec.path!r} has {width} entries on axis {axis}, not a multiple of group_size={spec.group_size}"
            )
        n_units = width // spec.group_size
        if n_units == 0:
            raise ValueError(f"layer {spec.path!r} has no units on axis {axis} (shape {tuple(activation.shape)})")
        kind = spec.kind or ("channel" if axis == 1 and activation.ndim >= 3 else "neuron")
        unit_lesion = spec.lesion or lesion
        if isinstance(unit_lesion, str) and unit_lesion not in _LESIONS:
            raise ValueError(f"lesion must be one of {_LESIONS} or a callable; got {unit_lesion!r}")
        if not isinstance(unit_lesion, str) and not callable(unit_lesion):
            raise TypeError(f"lesion must be one of {_LESIONS} or a callable; got {type(unit_lesion).__name__}")
        replacement = None
        if unit_lesion == "zero":
            replacement = torch.zeros((), dtype=activation.dtype, device=activation.device)
        elif unit_lesion == "skip":
            replacement = torch.full((), float("-inf"), dtype=activation.dtype, device=activation.device)
        elif unit_lesion == "mean":
            replacement = activation.mean(0, keepdim=True)
        resolved.append(
            ResolvedUnits(
                spec=spec,
                module=module,
                axis=axis,
                n_units=n_units,
                activation_shape=tuple(activation.shape),
                kind=kind,
                lesion=unit_lesion,
                replacement=replacement,
            )
        )
    return resolved, output


def list_layers(model: nn.Module, example_inputs: Any) -> list[LayerInfo]:
    """Every submodule that outputs a tensor, with its output shape, unit kind and unit count.

    Runs one forward pass on ``example_inputs`` (a tensor, tuple or dict) with recording hooks that are
    removed afterwards. Unit kind: "channel" (axis 1) for convolutional/batch-norm modules and 4-D
    outputs, "expert" for router/gate linears (``*.router``, ``*.gate``) with few outputs, otherwise
    "neuron" (last axis).

    Returns:
        A list of :class:`LayerInfo` in forward order.
    """
    modules = dict(model.named_modules())
    shapes, _ = record_activations(
        model, example_inputs, {name: (module, "output") for name, module in modules.items() if name}
    )
    order = list(shapes)  # insertion order = the order modules first produced output

    layers = []
    for name in order:
        module, activation = modules[name], shapes[name]
        if activation.ndim < 2:
            continue
        axis = _default_axis(module, activation)
        kind = "channel" if axis == 1 and activation.ndim >= 3 else "neuron"
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear) and leaf in ("router", "gate") and module.out_features <= 256:
            kind = "expert"
        layers.append(
            LayerInfo(
                path=name,
                module_type=type(module).__name__,
                output_shape=tuple(activation.shape),
                unit_kind=kind,
                n_units=int(activation.shape[axis]),
                axis=axis,
            )
        )
    return layers
