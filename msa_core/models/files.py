"""Model files: TorchScript (``.pt``) and ``torch.export`` programs (``.pt2``).

Lesions use Python forward hooks, which TorchScript modules do not support. So:

* ``.pt2``: ``torch.export.load`` then ``torch.export.unflatten``: the module hierarchy (and paths such as
  ``"1"`` or ``"encoder.fc"``) is rebuilt from the program and hooks work on every submodule.
* ``.pt`` TorchScript (scripted or traced): converted to an exported program with torch's TorchScript
  converter (``torch._export.converter.TS2EPConverter``; needs the example inputs), whose graph is flat.
  We put back one hookable *tap* module per layer: the output of each operation that uses a module's
  parameters becomes the output of a module at that path (``"0"`` for a Linear, ``"conv.1"`` for a
  BatchNorm), and parameter-free activations (ReLU, GELU, ...) get taps named ``"ops.<op name>"``.
* Any other ``.pt`` (a pickled ``nn.Module`` from ``torch.save(model)``) would run arbitrary code when
  loaded: it is refused. Only tensors are loaded with pickle, and only with ``weights_only=True``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..objectives import per_class_accuracy
from .filecheck import check_export_archive, not_a_model_file, sniff
from .subject import (
    ModelLoadError,
    Subject,
    batch_is_static,
    catalogue,
    fingerprint,
    move_inputs,
    run_once,
)

__all__ = ["load_file_subject", "load_torchscript", "load_exported", "Tap", "tap_graph_module"]

_ACTIVATION_OPS = {
    "relu", "relu_", "gelu", "silu", "silu_", "tanh", "sigmoid", "leaky_relu", "leaky_relu_", "elu", "hardtanh",
    "hardtanh_", "softplus", "mish", "hardswish", "relu6",
}


class Tap(nn.Module):
    """Identity module marking a layer output in a flat graph, so a forward hook can lesion it.

    When it replaces a parameter holder of a flat ``GraphModule``, it keeps that holder's parameters,
    buffers and children, so ``get_attr`` nodes (``"conv.0.weight"``) still resolve.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity: ``(...)`` -> ``(...)``."""
        return x


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent = root
    parts = path.split(".")
    for part in parts[:-1]:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    parent.add_module(parts[-1], module)


def tap_graph_module(graph_module: "torch.fx.GraphModule") -> "torch.fx.GraphModule":
    """Insert :class:`Tap` modules after the operations of a flat FX graph (see the module docstring).

    Returns the same graph module, recompiled; its ``named_modules()`` now lists the tap paths.
    """
    graph = graph_module.graph
    owners = {
        node.name: str(node.target).rsplit(".", 1)[0]
        for node in graph.nodes
        if node.op == "get_attr" and "." in str(node.target)
    }
    modules = dict(graph_module.named_modules())
    tapped: set[str] = set()
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        value = node.meta.get("val")
        if value is not None and not isinstance(value, torch.Tensor):
            continue
        used = {owners[a.name] for a in node.all_input_nodes if a.name in owners}
        op_name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if len(used) == 1:
            path = used.pop()
        elif not used and op_name in _ACTIVATION_OPS:
            path = f"ops.{node.name}"
        else:
            continue
        if path in tapped:
            continue  # first operation using the parameters gives the layer output (e.g. one linear)
        tap = Tap()
        holder = modules.get(path)
        if holder is not None:
            for key, param in holder._parameters.items():
                tap._parameters[key] = param
            for key, buffer in holder._buffers.items():
                tap._buffers[key] = buffer
            for key, child in holder._modules.items():
                tap._modules[key] = child
        _set_submodule(graph_module, path, tap)
        with graph.inserting_after(node):
            tapped_node = graph.call_module(path, (node,))
        node.replace_all_uses_with(tapped_node, delete_user_cb=lambda user, _t=tapped_node: user is not _t)
        tapped.add(path)
    graph.lint()
    graph_module.recompile()
    return graph_module


def _allow_eval(module: nn.Module) -> nn.Module:
    """``ExportedProgram.module()`` forbids ``.train()``/``.eval()`` (per-instance overrides): the graph is fixed
    in the mode it was exported in, so drop the overrides and let ``eval()`` be the no-op it is for a graph."""
    for name in ("train", "eval"):
        if name in vars(module):
            delattr(module, name)
    return module


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def _as_args(inputs: Any) -> tuple:
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list):
        return tuple(inputs)
    if isinstance(inputs, dict):
        return ()
    return (inputs,)


def _refuse_pickle(path: Path, reason: str) -> ModelLoadError:
    kind, found = sniff(path)
    if kind == "export":
        return ModelLoadError(f"{str(path)!r} is a torch.export program, not TorchScript: give it the suffix .pt2")
    if kind != "pickle":
        return not_a_model_file(path, found if kind == "other" else f"{found} that failed to load: {reason}")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f" (it needs {found.group(1)})" if found else ""
        return ModelLoadError(
            f"refused to load {str(path)!r}: it is a pickled Python object{what}, e.g. a whole nn.Module saved with "
            "torch.save(model), and unpickling it could run arbitrary code. msa_core loads only "
            "TorchScript (.pt), torch.export programs (.pt2) and plain tensors with weights_only=True. Save the "
            "model with torch.export.save / torch.jit.save, or write a recipe 'file.py:function' that builds the "
            "architecture and loads its state dict with torch.load(path, weights_only=True)"
        )
    kind = "a state dict" if isinstance(value, dict) else f"a {type(value).__name__}"
    return ModelLoadError(
        f"{str(path)!r} holds tensors only ({kind}), not a model, so there is no architecture to run. Write a "
        "recipe 'file.py:function' that builds the model and loads this file with "
        "torch.load(path, weights_only=True), or save the model with torch.export.save / torch.jit.save "
        f"({reason})"
    )


def load_torchscript(path: Path, inputs: Any, device: str) -> nn.Module:
    """A TorchScript file as a hookable module (converted to ``torch.export``, then tapped; see module docs)."""
    try:
        scripted = _quiet(torch.jit.load, str(path), map_location=device)
    except Exception as error:  # noqa: BLE001
        raise _refuse_pickle(path, f"not TorchScript: {type(error).__name__}") from None
    if inputs is None:
        raise ModelLoadError(
            f"{str(path)!r} is TorchScript and needs example inputs: pass inputs='inputs.npz' (or a .pt tensor file)"
        )
    # the scripted module itself first: inputs it rejects get the short "rejected the example inputs"
    # message rather than the converter's trace of its graph
    run_once(scripted, inputs, f"the TorchScript model in {str(path)!r}")
    try:
        from torch._export.converter import TS2EPConverter

        args = _as_args(inputs)
        kwargs = inputs if isinstance(inputs, dict) else None
        program = _quiet(lambda: TS2EPConverter(scripted, args, kwargs).convert())
        module = _allow_eval(program.module())
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(
            f"could not convert TorchScript {str(path)!r} into a module whose layers can be lesioned (TorchScript "
            f"modules do not support forward hooks): {type(error).__name__}: {error}. Export the model with "
            "torch.export.save (a .pt2 file) or bring it as a recipe 'file.py:function'"
        ) from None
    return tap_graph_module(module).to(device).eval()


def load_exported(path: Path, device: str) -> tuple[nn.Module, Any]:
    """A ``torch.export`` program as a hookable module (unflattened) and its saved example inputs (or None).

    The archive is checked first (:func:`~msa_core.models.filecheck.check_export_archive`): torch would
    unpickle some of its members without ``weights_only``, so only plain tensors and JSON get through.
    """
    check_export_archive(path)
    try:
        program = _quiet(torch.export.load, str(path))
    except Exception as error:  # noqa: BLE001
        kind, _ = sniff(path)
        if kind == "pickle":
            raise _refuse_pickle(path, "not a torch.export program") from None
        raise ModelLoadError(f"could not load {str(path)!r} as a torch.export program: {type(error).__name__}: {error}") from None
    example = None
    saved = getattr(program, "example_inputs", None)
    if saved:
        args, kwargs = saved
        example = kwargs if kwargs and not args else (args[0] if len(args) == 1 else tuple(args))
    try:
        module = _quiet(torch.export.unflatten, program)
    except Exception:  # noqa: BLE001 - fall back to the flat graph with taps
        module = tap_graph_module(_allow_eval(program.module()))
    return module.to(device), example


def load_file_subject(path: Path, *, inputs: Any, labels: torch.Tensor | None, device: str) -> Subject:
    """Subject of a ``.pt`` (TorchScript) or ``.pt2`` (torch.export) file with the given example inputs.

    Objectives: "output" (raw output; default) and "per-class accuracy" when labels were given.
    """
    suffix = path.suffix.lower()
    notes = ""
    kind, found = sniff(path)
    if kind == "other" and suffix in (".pt2", ".pt", ".pth", ".ts", ".jit"):
        raise not_a_model_file(path, found)  # before torch parses it: no misleading pickle or miniz message
    if suffix == ".pt2":
        model, example = load_exported(path, device)
        if inputs is None:
            if example is None:
                raise ModelLoadError(f"{str(path)!r} saved no example inputs: pass inputs='inputs.npz' (or a .pt tensor file)")
            inputs = example
        notes = "torch.export program (unflattened: module paths as in the original model)"
    elif suffix in (".pt", ".pth", ".ts", ".jit"):
        if inputs is not None:
            inputs = move_inputs(inputs, device)
        model = load_torchscript(path, inputs, device)
        notes = ("TorchScript converted to torch.export: lesionable layers are the modules with parameters and "
                 "'ops.*' activations")
    else:
        raise ModelLoadError(
            f"cannot load {str(path)!r}: model files must be TorchScript (.pt) or torch.export (.pt2); "
            "for anything else write a recipe 'file.py:function'"
        )
    inputs = move_inputs(inputs, device)
    output = run_once(model, inputs, f"the model in {str(path)!r}")
    static = batch_is_static(model, inputs)
    layers = catalogue(model, inputs, str(path))
    objectives: dict[str, Any] = {"output": lambda **_: None}
    default = "output"
    output_kind = "vector"
    logits = output if isinstance(output, torch.Tensor) else None
    if labels is not None and logits is not None and logits.ndim == 2:
        n_classes = max(int(labels.max()) + 1, int(logits.shape[1]))
        objectives["per-class accuracy"] = lambda **_: per_class_accuracy(labels, n_classes)
        default = "per-class accuracy"
        output_kind = "classes"
    elif logits is not None and logits.ndim == 4:
        output_kind = "image"
    candidates = [layer for layer in layers if not layer.path.startswith("ops.")] or layers
    hidden = [layer for layer in candidates[:-1]] or candidates
    default_units = [hidden[len(hidden) // 2].path] if hidden else []
    return Subject(
        ref=str(path), name=path.name, model=model, inputs=inputs, objectives=objectives, default_objective=default,
        layers=layers, default_units=default_units, unit_presets={}, output_kind=output_kind,
        description=notes + (" (static batch size: one coalition per forward pass)" if static else ""),
        fingerprint=fingerprint(model, inputs), default_batch_size=1 if static else None, device=device,
    )
