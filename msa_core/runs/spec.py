"""What determines a run: :class:`RunSpec`, its resolution against a subject, and the run key.

A run's key is the sha256 of a canonical JSON document holding everything that determines its
result: the subject's fingerprint (architecture, weights and inputs: the content of ``spec.inputs``,
not its path), the resolved units, the objective's description, the lesion, the estimator and its
budget, the seed and the ``msa_core`` version. Things that do not change the result (batch size,
device, label, backend) are left out, so asking for the same run on another device or with another
batch size finds the stored one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..lesion import UnitSpec

__all__ = ["RunSpec", "ResolvedRun", "load_subject", "list_builtins", "resolve", "run_key", "canonical_json", "ModelLoadError"]

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
        n_permutations: sampling budget in permutations (ignored by "exact").
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

    def __post_init__(self) -> None:
        if self.units is not None and not isinstance(self.units, tuple):
            units = (self.units,) if isinstance(self.units, str) else tuple(self.units)
            object.__setattr__(self, "units", units)

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
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(sorted(METHODS))}")
        if isinstance(self.n_permutations, bool) or not isinstance(self.n_permutations, int) or self.n_permutations < 1:
            raise ValueError(f"n_permutations must be a positive integer; got {self.n_permutations!r}")
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
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones take their defaults
        (a record stored before ``inputs`` existed loads with ``inputs=None``)."""
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


def load_subject(ref: str, *, inputs: Any = None, device: str = "cpu") -> Any:
    """``msa_core.models.load_subject(ref, inputs=inputs, device=device)``."""
    try:
        return _models_module().load_subject(ref, inputs=inputs, device=device)
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
    if hasattr(subject, "resolve_units"):  # msa_core.models.Subject
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
            raise ValueError(f"layer {path!r} is not a lesionable layer of {spec.model}; known layers: {shown}")
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

    def game(self) -> Any:
        """The subject's lesion game for this run."""
        return self.subject.game(
            units=self.units,
            objective=self.objective,
            lesion=self.spec.lesion,
            batch_size=self.spec.batch_size,
            device=self.spec.device,
        )


def canonical_json(document: Any) -> str:
    """Sorted-key, compact JSON (the hashed form of a run key document)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def resolve(spec: RunSpec, subject: Any = None) -> ResolvedRun:
    """Load the subject (unless given), resolve units and objective, and compute the run key."""
    from .. import __version__

    spec.validate()
    if subject is None:
        subject = load_subject(spec.model, inputs=spec.inputs, device=spec.device)
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
    document = {
        "fingerprint": subject.fingerprint,
        "units": [_unit_to_json(u) for u in units],
        "objective": {"key": objective, **description},
        "lesion": spec.lesion,
        "method": spec.method,
        "n_permutations": None if spec.method == "exact" else int(spec.n_permutations),
        "seed": None if spec.method == "exact" else int(spec.seed),
        "msa_core": __version__,
    }
    key = hashlib.sha256(canonical_json(document).encode()).hexdigest()
    return ResolvedRun(spec, subject, units, objective, description, document, key)


def run_key(spec: RunSpec, subject: Any = None) -> str:
    """The content hash (64 hex characters) identifying the result of ``spec``."""
    return resolve(spec, subject).key
