"""The :class:`Subject`: a model ready for MSA (eval mode, example inputs, objectives, lesionable layers).

A subject is what :func:`msa_core.models.load_subject` returns for any model reference (a built-in name,
a TorchScript / ``torch.export`` file, a Python recipe, a local Hugging Face directory, a torchvision
architecture). ``Subject.game(...)`` builds the :class:`~msa_core.games.LesionGame` with the subject's
defaults, so callers only name what they change.

The helpers the loaders share live beside it and stay importable from here: :mod:`.inputs` (example
inputs from files and arrays), :mod:`.probe` (fingerprint, device check, forward-pass checks, layer
catalogue), :mod:`.errors` (:class:`ModelLoadError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..games import LesionGame, lesion_game
from ..lesion import LayerInfo, UnitSpec
from ..objectives import Objective
from .errors import ModelLoadError
from .inputs import (  # noqa: F401 - the loaders import these from here
    as_input_tensors,
    load_inputs_file,
    move_inputs,
    n_rows,
    resolve_inputs,
)
from .probe import batch_is_static, catalogue, check_device, fingerprint, run_once  # noqa: F401 - as above

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

