"""What determines a run: :class:`RunSpec`, its resolution against a subject, and the run key.

A run's key is the sha256 of a canonical JSON document holding everything that determines its
result: the subject's fingerprint (architecture, weights and inputs: the content of ``spec.inputs``,
not its path), the resolved units (a preset is resolved to its units first), the objective's
description, the lesion, the estimator, its options and its budget, the seed, the content of a task
battery file (``spec.tasks``), the source file of a recipe (``file.py:function`` or
``module:function``: editing the recipe gives a new key) and the ``msa_core`` version. Things that do not change the result (batch size,
device, label, backend) are left out, so asking for the same run on another device or with another
batch size finds the stored one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..lesion import UnitSpec

__all__ = [
    "RunSpec", "ResolvedRun", "load_subject", "list_builtins", "resolve", "run_key", "canonical_json",
    "ModelLoadError", "recipe_source_hash", "file_hash",
]

_LESIONS = ("zero", "mean", "skip")


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to (re)compute a run.

    Attributes:
        model: a model reference accepted by :func:`msa_core.models.load_subject` (built-in name,
            file, recipe ``module:function`` or ``file.py:function``, local HF directory).
        units: module paths of the lesioned layers (None: the subject's defaults).
        objective: objective name among the subject's objectives (None: its default).
        lesion: "zero", "mean" or "skip".
        method: estimator name in :data:`msa_core.estimators.METHODS`.
        n_permutations: sampling budget in permutations (ignored by "exact", and when ``budget`` is set).
        budget: sampling budget in game evaluations (None: ``n_permutations`` states the budget).
        options: estimator options (e.g. ``{"k": 5}`` for "topk"); given as a dict, stored as a sorted
            tuple of ``(name, value)`` pairs so the spec stays hashable; part of the key.
        preset: a unit preset of the subject (e.g. "hidden layer"); resolved by
            :meth:`msa_core.models.Subject.resolve_units`; exclusive with ``units``.
        tasks: path of a task-battery file passed to ``load_subject(..., tasks=path)``; its content,
            not its path, is part of the key.
        seed: non-negative integer seed.
        batch_size: coalitions per forward pass (None: automatic); does not change the result.
        device: where the model runs ("cpu", "cuda", "cuda:1"); does not change the run key.
        label: a human label (not part of the key).
        inputs: path of an example-inputs file (``.npz`` or ``.pt`` tensor file) passed to
            :func:`msa_core.models.load_subject` (None: the model's own inputs). TorchScript ``.pt``
            models need one. The path itself is not part of the key: the inputs' content is, through
            the subject's fingerprint (and the labels through the objective's description), so a moved
            copy of the same file finds the same run.
    """

    model: str
    units: tuple[str, ...] | None = None
    objective: str | None = None
    lesion: str = "zero"
    method: str = "permutation"
    n_permutations: int = 100
    seed: int = 0
    batch_size: int | None = None
    device: str = "cpu"
    label: str = ""
    inputs: str | None = None
    budget: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    preset: str | None = None
    tasks: str | None = None

    def __post_init__(self) -> None:
        if self.units is not None and not isinstance(self.units, tuple):
            units = (self.units,) if isinstance(self.units, str) else tuple(self.units)
            object.__setattr__(self, "units", units)
        options = self.options
        if options is None:
            options = ()
        if isinstance(options, dict):
            options = tuple(options.items())
        try:
            options = tuple(sorted((str(k), v) for k, v in options))
        except (TypeError, ValueError):
            raise ValueError(f"options must be a dict of estimator options; got {self.options!r}") from None
        object.__setattr__(self, "options", options)

    @property
    def options_dict(self) -> dict[str, Any]:
        """The estimator options as a dict (``{}`` when none)."""
        return dict(self.options)

    def validate(self) -> "RunSpec":
        """Check the plain parameters (no model loading); raise ValueError with one clear message."""
        from ..estimators import METHODS

        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must be a non-empty model reference (a built-in name, a file or a recipe)")
        if self.inputs is not None and (not isinstance(self.inputs, str) or not self.inputs.strip()):
            raise ValueError(
                f"inputs must be None or a non-empty path of a .npz or .pt tensor file; got {self.inputs!r}"
            )
        if self.units is not None and (not self.units or not all(isinstance(u, str) and u for u in self.units)):
            raise ValueError(f"units must be None or a non-empty tuple of module paths; got {self.units!r}")
        if self.lesion not in _LESIONS:
            raise ValueError(f"unknown lesion {self.lesion!r}; choose one of {', '.join(_LESIONS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if isinstance(self.n_permutations, bool) or not isinstance(self.n_permutations, int) or self.n_permutations < 1:
            raise ValueError(f"n_permutations must be a positive integer; got {self.n_permutations!r}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 2):
            raise ValueError(f"budget must be None or a number of game evaluations >= 2; got {self.budget!r}")
        for name, value in self.options:
            if not (value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))):
                raise ValueError(f"estimator option {name!r} must be a number, a string or a bool; got {value!r}")
        if self.options:
            from ..estimators import make_estimator

            try:
                make_estimator(self.method, **self.options_dict)
            except TypeError as error:
                raise ValueError(f"method {self.method!r} does not take the options {self.options_dict}: {error}") from None
        if self.preset is not None and (not isinstance(self.preset, str) or not self.preset.strip()):
            raise ValueError(f"preset must be None or a preset name; got {self.preset!r}")
        if self.preset is not None and self.units is not None:
            raise ValueError("give units or a preset, not both")
        if self.tasks is not None and (not isinstance(self.tasks, str) or not self.tasks.strip()):
            raise ValueError(f"tasks must be None or the path of a task-battery file; got {self.tasks!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None; got {self.batch_size!r}")
        if not isinstance(self.device, str) or not self.device.split(":")[0] in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps'; got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (units as a list)."""
        data = dataclasses.asdict(self)
        data["units"] = None if self.units is None else list(self.units)
        data["options"] = self.options_dict
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones take their defaults
        (a record stored before ``inputs``, ``budget``, ``options``, ``preset`` or ``tasks`` existed loads
        with their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("units") is not None:
            kwargs["units"] = tuple(kwargs["units"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "RunSpec":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------- subjects
def _models_module():
    from .. import models

    return models


from ..models.subject import ModelLoadError  # noqa: E402 - the one class; load_subject wraps stray KeyErrors in it


def load_subject(ref: str, *, inputs: Any = None, device: str = "cpu", tasks: str | None = None) -> Any:
    """``msa_core.models.load_subject(ref, inputs=inputs, device=device[, tasks=tasks])``."""
    extra = {} if tasks is None else {"tasks": tasks}
    try:
        return _models_module().load_subject(ref, inputs=inputs, device=device, **extra)
    except TypeError as error:
        if tasks is not None and "tasks" in str(error):
            raise ModelLoadError("this msa_core cannot load task batteries (load_subject has no tasks=)") from None
        raise
    except (KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        raise ModelLoadError(str(message)) from error


def list_builtins() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of the built-in models."""
    return list(_models_module().list_builtins())


# ---------------------------------------------------------------------------------------- resolution
def _unit_to_json(unit: Any) -> Any:
    if isinstance(unit, UnitSpec):
        return {k: v for k, v in dataclasses.asdict(unit).items()}
    if isinstance(unit, str):
        return unit
    return repr(unit)


def _resolve_units(spec: RunSpec, subject: Any) -> list[Any]:
    paths = None if spec.units is None else list(spec.units)
    if spec.preset is not None:
        presets = getattr(subject, "unit_presets", {}) or {}
        if spec.preset not in presets:
            shown = ", ".join(repr(name) for name in presets) or "none"
            raise ValueError(f"{spec.model} has no unit preset {spec.preset!r}; presets: {shown}")
        paths = [spec.preset]
    if hasattr(subject, "resolve_units"):  # msa_core.models.Subject: presets and aliases resolved there
        resolved = list(subject.resolve_units(paths))
    elif paths is None:
        resolved = list(subject.default_units)
    else:
        layers = {layer.path: layer for layer in getattr(subject, "layers", [])}
        resolved = [layers[p].to_spec() if p in layers and layers[p].unit_kind == "expert" else p for p in paths]
    catalogue = [layer.path for layer in getattr(subject, "layers", [])]
    modules = {name for name, _ in subject.model.named_modules()}
    for unit in resolved:  # fail before any work, naming the layers that exist
        path = unit if isinstance(unit, str) else getattr(unit, "path", None)
        if isinstance(unit, str) and path not in modules and path not in catalogue:
            shown = ", ".join(catalogue[:12]) + (" ..." if len(catalogue) > 12 else "")
            presets = ", ".join(repr(name) for name in getattr(subject, "unit_presets", {}) or {})
            raise ValueError(
                f"layer {path!r} is not a lesionable layer or unit preset of {spec.model}; known layers: {shown}"
                + (f"; presets: {presets}" if presets else "")
            )
    return resolved


@dataclass
class ResolvedRun:
    """A spec bound to a loaded subject: resolved units and objective, the key document and the key."""

    spec: RunSpec
    subject: Any
    units: list[Any]
    objective: str
    objective_description: dict[str, Any]
    document: dict[str, Any]
    key: str
    built_game: Any = dataclasses.field(default=None, repr=False)

    def game(self) -> Any:
        """The subject's lesion game for this run (built once, then kept)."""
        if self.built_game is None:
            self.built_game = self.subject.game(
                units=self.units,
                objective=self.objective,
                lesion=self.spec.lesion,
                batch_size=self.spec.batch_size,
                device=self.spec.device,
            )
        return self.built_game

    @property
    def budget(self) -> int | None:
        """The effective budget in game evaluations (None for a method whose cost ignores it)."""
        return self.document["budget"]


def budget_evaluations(spec: RunSpec, n_players: int) -> int:
    """Game evaluations the spec's budget stands for: ``budget``, or what ``n_permutations`` join orders cost."""
    from ..estimators import resolve_budget

    return resolve_budget(n_players, spec.budget, None if spec.budget is not None else spec.n_permutations)


def effective_budget(spec: RunSpec, n_players: int) -> int | None:
    """:func:`budget_evaluations`, or None when the method's plan does not depend on the budget (exact)."""
    from ..estimators import make_estimator

    estimator = make_estimator(spec.method, **spec.options_dict)
    if estimator.plan(n_players, 2) == estimator.plan(n_players, 10**12):
        return None
    return budget_evaluations(spec, n_players)


def canonical_json(document: Any) -> str:
    """Sorted-key, compact JSON (the hashed form of a run key document)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def resolve(spec: RunSpec, subject: Any = None) -> ResolvedRun:
    """Load the subject (unless given), resolve units and objective, and compute the run key."""
    from .. import __version__

    spec.validate()
    tasks_hash = None
    if spec.tasks is not None:
        if not Path(spec.tasks).expanduser().is_file():
            raise ValueError(f"tasks file {spec.tasks!r} does not exist; give the path of a task-battery file")
        tasks_hash = file_hash(Path(spec.tasks).expanduser())
    if subject is None:
        subject = load_subject(spec.model, inputs=spec.inputs, device=spec.device, tasks=spec.tasks)
    objective = spec.objective or subject.default_objective
    if hasattr(subject, "objective"):  # msa_core.models.Subject: handles "name:arg" and names the choices
        made = subject.objective(objective)
    else:
        if objective not in subject.objectives:
            raise ValueError(
                f"unknown objective {objective!r} for {spec.model}; choose one of {', '.join(sorted(subject.objectives))}"
            )
        made = subject.objectives[objective]()
    description = made.describe() if made is not None and hasattr(made, "describe") else {"name": "output"}
    units = _resolve_units(spec, subject)
    resolved = ResolvedRun(spec, subject, units, objective, description, {}, "")
    budget = effective_budget(spec, int(resolved.game().n_players))
    document = {
        "fingerprint": subject.fingerprint,
        "units": [_unit_to_json(u) for u in units],
        "objective": {"key": objective, **description},
        "lesion": spec.lesion,
        "method": spec.method,
        "budget": budget,  # evaluations: n_permutations=M and budget=2+M(n-1) are the same run
        "seed": None if budget is None else int(spec.seed),
        "msa_core": __version__,
    }
    # added only when set, so that the keys of runs without them stay what they were
    if spec.options:
        document["options"] = spec.options_dict
    if tasks_hash is not None:
        document["tasks"] = tasks_hash
    source = recipe_source_hash(spec.model)
    if source is not None:
        document["recipe_source"] = source
    resolved.document = document
    resolved.key = hashlib.sha256(canonical_json(document).encode()).hexdigest()
    return resolved


def file_hash(path: Path | str) -> str:
    """sha256 hex of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def recipe_source_hash(ref: str) -> str | None:
    """sha256 of the source file of a recipe reference, or None for anything else.

    ``path/file.py:function``: that file. ``package.module:function``: the module's file, found with
    :func:`importlib.util.find_spec` (the module itself is not imported; its parent packages are). Only
    the recipe's own file is hashed, not what it imports. A module that cannot be found gives None
    (loading the model then reports it).
    """
    import importlib.util

    from ..models.recipe import _FILE_REF, _MODULE_REF

    if not isinstance(ref, str) or Path(ref).expanduser().exists():
        return None
    match = _FILE_REF.match(ref)
    if match:
        file = Path(match["file"]).expanduser()
        return file_hash(file) if file.is_file() else None
    if not _MODULE_REF.match(ref):
        return None
    try:
        found = importlib.util.find_spec(ref.split(":", 1)[0])
    except (ImportError, ValueError, AttributeError):
        return None
    origin = getattr(found, "origin", None)
    if not origin or not Path(origin).is_file():
        return None
    return file_hash(origin)


def run_key(spec: RunSpec, subject: Any = None) -> str:
    """The content hash (64 hex characters) identifying the result of ``spec``."""
    return resolve(spec, subject).key
