"""Model loading: any model reference -> a :class:`Subject` ready for MSA.

``load_subject(ref, inputs=None, device="cpu")`` resolves, in this order:

1. a built-in name (``list_builtins()``): ``mlp-digits``, ``mlp-digits-l1``, ``mlp-digits-l2``,
   ``dcgan-digits``, ``moe-lm``;
2. ``torchvision:<arch>[:<weights.pth>]`` (only when torchvision imports);
3. a Python recipe ``package.module:function`` or ``path/to/file.py:function``;
4. a local Hugging Face directory (has ``config.json``; ``local_files_only``, never the network);
5. a model file: TorchScript ``.pt`` or ``torch.export`` ``.pt2`` (pickled modules are refused).

``inputs``: a ``.npz`` / ``.pt`` tensor file path, or tensors / arrays (a tuple for positional arguments,
a dict for keyword arguments), inputs on axis 0. An ``.npz`` with ``labels`` or ``y`` adds a per-class
accuracy game. Every failure is a :class:`ModelLoadError` (a ``ValueError``) with one clear message; it is the
one such class (``msa_core.ModelLoadError``, ``msa_core.runs.ModelLoadError`` are the same object).

``trusted=False`` (the app) runs recipes and Hugging Face folders with their own code only where the server
operator allowed it (``MSA_RECIPE_DIRS``, ``MSA_RECIPE_MODULES``; see :mod:`msa_core.models.policy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .builtin import list_builtins, load_builtin_subject
from .policy import RecipePolicy, RecipeRefused
from .subject import ModelLoadError, SpecLayerInfo, Subject, check_device, fingerprint, resolve_inputs

__all__ = ["load_subject", "list_builtins", "Subject", "SpecLayerInfo", "ModelLoadError", "RecipePolicy",
           "RecipeRefused", "fingerprint"]


def load_subject(ref: str, *, inputs: Any = None, device: str = "cpu", trusted: bool | RecipePolicy = True,
                 tasks: Any = None) -> Subject:
    """:func:`_load_subject`, then ``tasks`` (a task battery: YAML/JSON path, text, mapping or
    :class:`msa_core.tasks.TaskBattery`) made the default objective ``"tasks"`` of a language model
    (Hugging Face with a tokenizer, or moe-lm); :class:`msa_core.tasks.BatteryError` when it cannot be."""
    subject = _load_subject(ref, inputs=inputs, device=device, trusted=trusted)
    if tasks is not None:
        from ..tasks import attach_battery

        attach_battery(subject, tasks)
    return subject


def _load_subject(ref: str, *, inputs: Any = None, device: str = "cpu",
                  trusted: bool | RecipePolicy = True) -> Subject:
    """Resolve a model reference to a :class:`Subject` (model in eval mode on ``device``, inputs, games, layers).

    Args:
        ref: built-in name, ``torchvision:arch:weights``, ``module:function`` / ``file.py:function`` recipe,
            Hugging Face directory, or ``.pt`` (TorchScript) / ``.pt2`` (torch.export) file.
        inputs: example inputs (file path, tensor, array, tuple or dict; inputs on axis 0) or None for the
            model's defaults (required for TorchScript files and for .pt2 files saved without examples).
        device: "cpu", "cuda", "cuda:1", "mps"; must be present here.
        trusted: True (command line, Python API): every recipe may run. False (a browser user of the app):
            recipes only from ``MSA_RECIPE_DIRS`` / ``MSA_RECIPE_MODULES``, no Hugging Face folder with its own
            code; or an explicit :class:`RecipePolicy`.

    Returns:
        A :class:`Subject`.

    Raises:
        ModelLoadError: unknown name, missing file, refused pickle, failing recipe, inputs the model rejects,
            absent device, ...: the message names the problem and what to do. :class:`RecipeRefused` (a
            ModelLoadError) when ``trusted`` does not allow the code the reference would run.
    """
    from ..zoo import BUILTINS
    from .recipe import is_recipe_ref, load_recipe_subject
    from .tv import is_torchvision_ref, load_torchvision_subject

    if not isinstance(ref, (str, Path)) or not str(ref).strip():
        raise ModelLoadError(f"a model reference must be a non-empty string; got {ref!r}")
    ref = str(ref).strip()
    policy = RecipePolicy.for_caller(trusted)
    device = check_device(device)
    given, labels = resolve_inputs(inputs)
    if ref in BUILTINS:
        return load_builtin_subject(ref, inputs=given, labels=labels, device=device)
    if is_torchvision_ref(ref):
        return load_torchvision_subject(ref, inputs=given, labels=labels, device=device)
    path = Path(ref).expanduser()
    if is_recipe_ref(ref) and not path.exists():
        return load_recipe_subject(ref, inputs=given, labels=labels, device=device, policy=policy)
    if path.is_dir():
        from .hf import is_hf_dir, load_hf_subject

        if not is_hf_dir(path):
            raise ModelLoadError(
                f"{ref!r} is a directory without config.json, so not a Hugging Face model; give a model directory "
                "saved with save_pretrained, a .pt/.pt2 file or a recipe"
            )
        policy.check_hf_dir(path)
        return load_hf_subject(path, inputs=given, device=device)
    if path.is_file():
        from .files import load_file_subject

        return load_file_subject(path, inputs=given, labels=labels, device=device)
    if "/" in ref or "\\" in ref or path.suffix:
        raise ModelLoadError(f"model file {ref!r} does not exist; check the path (relative to {Path.cwd()})")
    raise ModelLoadError(
        f"unknown model {ref!r}: not a built-in ({', '.join(BUILTINS)}), nor a file, a Hugging Face directory or a "
        "recipe 'module:function'"
    )
