"""Python recipes: ``package.module:function`` or ``path/to/file.py:function``.

The function takes no arguments (or an optional ``device=``) and returns ``(model, inputs)`` or a dict with
keys ``model``, ``inputs`` and optionally ``objectives`` (name -> Objective | zero-argument factory |
``f(outputs)`` | None), ``default_objective``, ``default_units``, ``unit_presets``, ``labels`` (adds
"per-class accuracy"), ``class_names``, ``name``, ``description``, ``output_kind``, ``samples``.
This is the way to bring any architecture, e.g. building it and loading a state dict with
``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..objectives import class_probability, per_class_accuracy
from .policy import RecipePolicy
from .subject import (
    ModelLoadError,
    Subject,
    as_input_tensors,
    batch_is_static,
    catalogue,
    fingerprint,
    move_inputs,
    n_rows,
    objective_factories,
    run_once,
)

__all__ = ["is_recipe_ref", "load_recipe_function", "load_recipe_subject"]

_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FILE_REF = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)$")


def is_recipe_ref(ref: str) -> bool:
    """True for ``"pkg.module:function"`` and ``"path/file.py:function"``."""
    return bool(_FILE_REF.match(ref) or _MODULE_REF.match(ref))


# What a recipe's import or call may raise and still be reported as a failed load: every Exception (including
# RecursionError and MemoryError) and SystemExit (``exit()``, ``sys.exit()`` in user code). KeyboardInterrupt
# passes: on the command line it is the user's Ctrl-C (the app catches it itself; see ui.errors).
_RECIPE_FAILURES = (Exception, SystemExit)


def _failure(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"SystemExit (the code called exit({error.code!r}))"
    return f"{type(error).__name__}: {error}"


def load_recipe_function(ref: str, policy: RecipePolicy | None = None) -> Callable:
    """Import the recipe's module (or file) and return the function; :class:`ModelLoadError` when missing.

    ``policy`` (None: trusted) is checked before anything is imported: a refused recipe runs no code.
    """
    policy = policy or RecipePolicy()
    match = _FILE_REF.match(ref)
    if match:
        file = Path(match["file"]).expanduser()
        policy.check_file(ref, file)
        if not file.is_file():
            raise ModelLoadError(f"recipe file {str(file)!r} does not exist; give 'path/to/file.py:function'")
        name = "msa_recipe_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except _RECIPE_FAILURES as error:
            sys.modules.pop(name, None)
            raise ModelLoadError(f"importing recipe file {str(file)!r} failed: {_failure(error)}") from None
        function_name = match["function"]
    else:
        module_name, function_name = ref.split(":", 1)
        policy.check_module(ref, module_name)
        try:
            module = _import_fresh(module_name)
        except ModuleNotFoundError as error:
            raise ModelLoadError(
                f"recipe module {module_name!r} cannot be imported ({error}); check the name and that it is on "
                "sys.path, or give a file path 'path/to/file.py:function'"
            ) from None
        except _RECIPE_FAILURES as error:
            raise ModelLoadError(f"importing recipe module {module_name!r} failed: {_failure(error)}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ModelLoadError(f"recipe {ref!r}: the module has no function {function_name!r}")
    return function


_SOURCE_HASHES: dict[str, str] = {}  # module name -> sha256 of its source when it was (re)loaded here


def _source_hash(module: Any) -> str | None:
    file = getattr(module, "__file__", None)
    if not file or not str(file).endswith(".py") or not Path(file).is_file():
        return None
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def _import_fresh(module_name: str) -> Any:
    """Import ``module_name``, reloading it when its source file changed since this process loaded it.

    The run key hashes a module recipe's source, so an edited recipe gets a new key; without the reload a
    long-lived process (the app, the job runner) would compute that new run with the old, cached code.
    """
    module = importlib.import_module(module_name)
    current = _source_hash(module)
    known = _SOURCE_HASHES.setdefault(module_name, current) if current else None
    if current is not None and known != current:
        module = importlib.reload(module)
        _SOURCE_HASHES[module_name] = current
    return module


def _call(function: Callable, ref: str, device: str) -> Any:
    try:
        accepts_device = "device" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        accepts_device = False
    try:
        return function(device=device) if accepts_device else function()
    except _RECIPE_FAILURES as error:
        raise ModelLoadError(f"the recipe {ref!r} raised {_failure(error)}") from None


def load_recipe_subject(ref: str, *, inputs: Any, labels: torch.Tensor | None, device: str,
                        policy: RecipePolicy | None = None) -> Subject:
    """Subject built by the recipe ``ref``; ``inputs`` (tensors) given here replace the recipe's inputs.

    ``policy``: who may run which recipes (None: trusted; see :mod:`msa_core.models.policy`).
    """
    result = _call(load_recipe_function(ref, policy), ref, device)
    if isinstance(result, tuple) and len(result) == 2:
        result = {"model": result[0], "inputs": result[1]}
    if not isinstance(result, dict) or "model" not in result:
        raise ModelLoadError(
            f"the recipe {ref!r} returned {type(result).__name__}; it must return (model, inputs) or a dict with "
            "keys 'model' and 'inputs'"
        )
    model = result["model"]
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"the recipe {ref!r} returned a model of type {type(model).__name__}, not a torch.nn.Module")
    model = model.to(device).eval()
    if inputs is None:
        if result.get("inputs") is None:
            raise ModelLoadError(f"the recipe {ref!r} returned no inputs; return (model, inputs) or pass inputs=")
        inputs = as_input_tensors(result["inputs"])
    inputs = move_inputs(inputs, device)
    if labels is None and result.get("labels") is not None:
        labels = torch.as_tensor(result["labels"]).long()
    output = run_once(model, inputs, f"the model of recipe {ref!r}")
    static = batch_is_static(model, inputs)
    layers = catalogue(model, inputs, f"recipe {ref!r}")
    objectives: dict[str, Any] = {}
    class_names = result.get("class_names")
    n_inputs = n_rows(inputs)
    output_kind = result.get("output_kind")
    if labels is not None and isinstance(output, torch.Tensor) and output.ndim == 2:
        n_classes = max(int(labels.max()) + 1, int(output.shape[1]))
        objectives["per-class accuracy"] = lambda **_: per_class_accuracy(labels, n_classes, class_names)
        objectives["class probability"] = lambda **_: class_probability(n_inputs, class_names)
        output_kind = output_kind or "classes"
    objectives.update(objective_factories(result.get("objectives") or {}))
    objectives.setdefault("output", lambda **_: None)
    default_objective = result.get("default_objective") or next(iter(objectives))
    if default_objective not in objectives:
        raise ModelLoadError(f"recipe {ref!r}: default_objective {default_objective!r} is not one of {list(objectives)}")
    default_units = result.get("default_units")
    if default_units is None:
        inner = layers[:-1] or layers
        default_units = [inner[len(inner) // 2].path] if inner else []
    elif isinstance(default_units, str):
        default_units = [default_units]
    if output_kind is None:
        output_kind = "image" if isinstance(output, torch.Tensor) and output.ndim == 4 else "vector"
    return Subject(
        ref=ref, name=result.get("name") or ref.rsplit(":", 1)[-1], model=model, inputs=inputs,
        objectives=objectives, default_objective=default_objective, layers=layers,
        default_units=list(default_units), unit_presets=dict(result.get("unit_presets") or {}),
        output_kind=output_kind, description=result.get("description") or f"recipe {ref}",
        samples=dict(result.get("samples") or {}), fingerprint=fingerprint(model, inputs),
        default_batch_size=1 if static else None, device=device,
    )
