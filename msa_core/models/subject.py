"""The :class:`Subject`: a model ready for MSA (eval mode, example inputs, objectives, lesionable layers).

A subject is what :func:`msa_core.models.load_subject` returns for any model reference (a built-in name,
a TorchScript / ``torch.export`` file, a Python recipe, a local Hugging Face directory, a torchvision
architecture). ``Subject.game(...)`` builds the :class:`~msa_core.games.LesionGame` with the subject's
defaults, so callers only name what they change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..games import LesionGame, lesion_game
from ..lesion import LayerInfo, UnitSpec, forward, list_layers
from ..objectives import Objective

__all__ = [
    "ModelLoadError",
    "Subject",
    "SpecLayerInfo",
    "ObjectiveFactory",
    "fingerprint",
    "check_device",
    "as_input_tensors",
    "load_inputs_file",
    "run_once",
    "catalogue",
]

ObjectiveFactory = Callable[..., "Objective | None"]
"""``factory(**options) -> Objective | None`` (None: the raw model output is the game value)."""


class ModelLoadError(ValueError):
    """A model reference could not be turned into a subject (or a game); the message says why and what to do."""


@dataclass
class SpecLayerInfo(LayerInfo):
    """A catalogue row whose units need more than a path (attention heads, MoE experts).

    ``path`` may be an alias (e.g. ``"transformer.h.0.attn.heads"``) that is not a module path;
    ``spec`` is the :class:`UnitSpec` that lesions these units, returned by :meth:`to_spec`.
    """

    spec: UnitSpec | None = None

    def to_spec(self) -> UnitSpec:
        """The stored :class:`UnitSpec` (falls back to :meth:`LayerInfo.to_spec`)."""
        return self.spec if self.spec is not None else super().to_spec()


@dataclass
class Subject:
    """A model ready for MSA.

    Attributes:
        ref: the reference it was loaded from (built-in name, path, ``module:function``, ...).
        name: display name.
        model: the ``nn.Module`` in eval mode.
        inputs: example inputs, a tensor ``(n_inputs, ...)``, a tuple of positional tensors or a dict of
            keyword tensors, inputs on axis 0.
        objectives: objective name -> factory; a factory returns an :class:`Objective` or None (the raw
            output). Factories take optional keyword options (e.g. ``word=`` for a token game); a name
            ``"name:arg"`` passes ``arg`` as the factory's first option.
        default_objective: a key of ``objectives``.
        layers: the lesionable-layer catalogue (:class:`LayerInfo`, some :class:`SpecLayerInfo`).
        default_units: players used when ``game(units=None)``.
        unit_presets: named unit selections, e.g. ``{"one block": [...], "all blocks": [...]}``.
        output_kind: "image" | "classes" | "languages" | "tokens" | "vector" (for the default objective).
        description: one paragraph about the model.
        samples: things to show, e.g. ``{"images": ndarray (k, H, W)}`` or ``{"words": [...]}``.
        fingerprint: sha256 hex of the class name, ``str(model)``, weights and inputs.
        default_lesion: "zero" unless the model needs otherwise.
        default_batch_size: coalitions per forward pass (1 for models exported with a static batch size).
        device: where the model is.
    """

    ref: str
    name: str
    model: nn.Module
    inputs: Any
    objectives: dict[str, ObjectiveFactory]
    default_objective: str
    layers: list[LayerInfo]
    default_units: list[str | UnitSpec]
    unit_presets: dict[str, list[str | UnitSpec]] = field(default_factory=dict)
    output_kind: str = "vector"
    description: str = ""
    samples: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    default_lesion: str = "zero"
    default_batch_size: int | None = None
    device: str = "cpu"

    @property
    def n_weights(self) -> int:
        """Number of learned values: the model's parameters, or, when loading turned them into buffers
        (a converted TorchScript file has no parameters), its floating-point buffers."""
        count = sum(p.numel() for p in self.model.parameters())
        if count == 0:
            count = sum(b.numel() for b in self.model.buffers() if b.is_floating_point())
        return int(count)

    # ------------------------------------------------------------------ objectives
    def objective(self, name: str | None = None, **options: Any) -> Objective | None:
        """The objective called ``name`` (default: ``default_objective``), built with ``options``.

        ``"name:arg"`` is ``name`` with ``arg`` as its first option (e.g. ``"token log-prob:hello"``).
        Raises :class:`ModelLoadError` for an unknown name (listing the valid ones).
        """
        name = self.default_objective if name is None else name
        factory = self.objectives.get(name)
        if factory is None and ":" in name:
            base, arg = name.split(":", 1)
            factory = self.objectives.get(base)
            if factory is not None:
                try:
                    return factory(arg, **options)
                except (ValueError, TypeError) as error:
                    raise ModelLoadError(f"objective {name!r} of {self.name}: {error}") from error
        if factory is None:
            raise ModelLoadError(
                f"{self.name} has no objective {name!r}; choose one of {', '.join(repr(k) for k in self.objectives)}"
            )
        try:
            return factory(**options)
        except (ValueError, TypeError) as error:
            raise ModelLoadError(f"objective {name!r} of {self.name}: {error}") from error

    def objective_labels(self, name: str | None = None) -> list[str] | None:
        """Labels of the game outputs of objective ``name`` (class names, languages, characters) or None."""
        objective = self.objective(name)
        return None if objective is None else (list(objective.output_labels) if objective.output_labels else None)

    def objective_kind(self, name: str | None = None) -> str:
        """Output kind of objective ``name``: its ``output_kind`` attribute, else the subject's."""
        objective = self.objective(name)
        return getattr(objective, "output_kind", None) or self.output_kind

    # ------------------------------------------------------------------ units
    def resolve_units(self, units: Any = None) -> list[str | UnitSpec]:
        """Units as the engine takes them; the one place where unit choices and presets are resolved.

        ``units`` is None (the defaults), a preset name of :attr:`unit_presets` (e.g. ``"hidden layer"``),
        a layer path or alias, a :class:`UnitSpec`, or a list mixing these (a preset inside a list adds its
        units). A path or alias naming a head/expert layer of the catalogue becomes its :class:`UnitSpec`
        (so ``"blocks.0.moe.router"`` is skipped, not zeroed). Returns a list of paths and UnitSpecs.

        Raises:
            ModelLoadError: an empty list of units.
        """
        if units is None:
            units = self.default_units
        if isinstance(units, (str, UnitSpec)):
            units = [units]
        units = list(units)
        if not units:
            raise ModelLoadError(f"no units given for {self.name}; name a layer or a preset ({self.preset_names()})")
        expanded: list[Any] = []
        for unit in units:
            preset = self.unit_presets.get(unit) if isinstance(unit, str) else None
            expanded.extend(preset if preset is not None and unit not in self._layer_paths() else [unit])
        by_path = {layer.path: layer for layer in self.layers}
        resolved: list[str | UnitSpec] = []
        for unit in expanded:
            layer = by_path.get(unit) if isinstance(unit, str) else None
            if layer is not None and (isinstance(layer, SpecLayerInfo) or layer.unit_kind == "expert"):
                resolved.append(layer.to_spec())
            else:
                resolved.append(unit)
        return resolved

    def preset(self, name: str) -> list[str | UnitSpec]:
        """The resolved units of preset ``name``; :class:`ModelLoadError` listing the presets if unknown."""
        if name not in self.unit_presets:
            raise ModelLoadError(f"{self.name} has no unit preset {name!r}; {self.preset_names()}")
        return self.resolve_units([name])

    def preset_names(self) -> str:
        """One phrase naming the presets (for error messages)."""
        if not self.unit_presets:
            return "it has no unit presets"
        return "presets: " + ", ".join(repr(name) for name in self.unit_presets)

    def _layer_paths(self) -> set[str]:
        return {layer.path for layer in self.layers}

    # ------------------------------------------------------------------ games
    def game(
        self,
        units: Any = None,
        objective: str | Objective | None = None,
        lesion: Any = None,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        prefix_reuse: bool = True,
        **objective_options: Any,
    ) -> LesionGame:
        """The lesion game on this subject.

        Args:
            units: a preset name, layer paths / aliases / :class:`UnitSpec` (None: ``default_units``); see
                :meth:`resolve_units`.
            objective: a name from ``objectives`` (``"name:arg"`` allowed), an :class:`Objective`, or None
                for ``default_objective``.
            lesion: "zero", "mean", "skip" or a callable (None: ``default_lesion``; expert units keep "skip").
            batch_size: coalitions per forward pass (None: the subject's default).
            device: where to run (None: where the model is).
            prefix_reuse: run only the decoder layers from the first one holding a player, for Hugging
                Face decoders (see :func:`msa_core.games.lesion_game`).
            **objective_options: passed to the objective factory (e.g. ``word="hello"``).

        Returns:
            A :class:`LesionGame`: ``game(coalitions (batch, n_players) bool) -> (batch, *output_shape)``.

        Raises:
            ModelLoadError: unknown objective, a layer that does not exist, a device that is not present,
            inputs the model rejects; the message names the problem.
        """
        built = objective if isinstance(objective, Objective) else self.objective(objective, **objective_options)
        inputs = getattr(built, "inputs", None)
        inputs = self.inputs if inputs is None else inputs
        try:
            return lesion_game(
                self.model,
                self.resolve_units(units),
                inputs,
                objective=built,
                lesion=lesion or self.default_lesion,
                batch_size=batch_size or self.default_batch_size,
                device=device,
                prefix_reuse=prefix_reuse,
            )
        except (ValueError, RuntimeError, TypeError) as error:
            raise ModelLoadError(f"cannot build the lesion game on {self.name}: {error}") from error

    def __repr__(self) -> str:
        return (
            f"Subject({self.name!r}, ref={self.ref!r}, {len(self.layers)} layers, objectives={list(self.objectives)}, "
            f"default units={[getattr(u, 'path', u) for u in self.default_units]})"
        )


# ---------------------------------------------------------------------- helpers


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
    from pathlib import Path

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
    from pathlib import Path

    if inputs is None:
        return None, None
    if isinstance(inputs, (str, Path)):
        return load_inputs_file(str(inputs))
    return as_input_tensors(inputs), None


def _describe_inputs(inputs: Any) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"a {tuple(inputs.shape)} {str(inputs.dtype).replace('torch.', '')} tensor"
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k}: {_describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(_describe_inputs(v) for v in inputs) + ")"
    return type(inputs).__name__


def move_inputs(inputs: Any, device: str) -> Any:
    """Inputs moved to ``device`` (tensors, tuples, dicts)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: move_inputs(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move_inputs(v, device) for v in inputs)
    return inputs


def run_once(model: nn.Module, inputs: Any, what: str) -> Any:
    """One forward pass on ``inputs`` without gradients; :class:`ModelLoadError` naming the input shapes if the
    model rejects them."""
    try:
        with torch.no_grad():
            return forward(model, inputs)
    except Exception as error:  # noqa: BLE001 - any failure here means the inputs do not fit
        raise ModelLoadError(
            f"{what} rejected the example inputs ({_describe_inputs(inputs)}): {type(error).__name__}: "
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


def n_rows(inputs: Any) -> int:
    """Number of inputs (size of axis 0) of a tensor, a tuple or a dict of tensors."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, dict):
        return n_rows(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)) and inputs:
        return n_rows(inputs[0])
    raise ModelLoadError(f"inputs must be a tensor, a tuple or a dict of tensors; got {type(inputs).__name__}")


def objective_factories(objectives: dict[str, Any]) -> dict[str, ObjectiveFactory]:
    """Normalise a user mapping name -> Objective | callable factory | None into factories."""
    factories: dict[str, ObjectiveFactory] = {}
    for name, value in objectives.items():
        if value is None:
            factories[name] = lambda **_: None
        elif isinstance(value, Objective):
            factories[name] = lambda _value=value, **_: _value
        elif callable(value):
            factories[name] = _wrap_callable(value)
        else:
            raise ModelLoadError(f"objective {name!r} must be an Objective, a factory or None; got {type(value).__name__}")
    return factories


def _wrap_callable(value: Callable) -> ObjectiveFactory:
    """A zero-argument factory is called; anything else callable (``f(outputs)``) becomes a FunctionObjective."""
    import inspect

    from ..objectives import FunctionObjective

    try:
        n_required = sum(
            1 for p in inspect.signature(value).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
    except (TypeError, ValueError):
        n_required = 1
    if n_required == 0:
        return lambda **options: value(**options)
    return lambda _value=value, **_: FunctionObjective(_value)

