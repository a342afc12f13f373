"""Logic of the click-to-lesion editor (no Streamlit here: every function is unit-testable).

* :class:`LesionEditor` evaluates one coalition of a model's units at a time (the live output of the
  editor), caching recent coalitions so toggling a unit back is instant.
* :func:`top_k` / :func:`bottom_k`: preset lesion sets from Shapley values.
* :func:`mask_to_json`, :func:`mask_to_npz`, :func:`load_mask`: export and import a lesion mask.
* :func:`pruned_model`, :func:`save_pruned`, :func:`load_pruned`: a copy of the model with the
  lesion baked into its weights (lesioned units zeroed, skipped experts given a ``-inf`` router bias),
  saved as safetensors, that loads back and computes exactly what the lesioned model computes.
* :func:`lesion_curves`: performance as units are removed in a given order (Shapley, random,
  activation magnitude), all orders evaluated in one batched game call.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .games import LesionGame
from .lesion import ResolvedUnits, resolve_module
from .objectives import Objective

__all__ = [
    "EditorOutput",
    "LesionEditor",
    "top_k",
    "bottom_k",
    "coalition",
    "mask_to_json",
    "mask_to_npz",
    "load_mask",
    "pruned_model",
    "save_pruned",
    "load_pruned",
    "PruneError",
    "scalarise",
]


class PruneError(ValueError):
    """The lesion of some unit cannot be written into the model's weights."""


def coalition(n_units: int, lesioned: Iterable[int]) -> torch.Tensor:
    """Bool coalition row ``(1, n_units)``: True (intact) except at the ``lesioned`` indices."""
    row = torch.ones((1, n_units), dtype=torch.bool)
    idx = sorted({int(i) for i in lesioned})
    if idx and (idx[0] < 0 or idx[-1] >= n_units):
        raise IndexError(f"unit indices must be in [0, {n_units}); got {idx[0] if idx[0] < 0 else idx[-1]}")
    if idx:
        row[0, idx] = False
    return row


@dataclass
class EditorOutput:
    """The model's behaviour under one lesion set.

    Attributes:
        lesioned: sorted unit indices that are lesioned.
        outputs: raw model outputs ``(n_inputs, *model_output)`` (float32, CPU).
        scores: objective name -> game value (CPU tensors) computed from ``outputs``.
        elapsed_s: wall time of the evaluation (0 when served from the cache).
    """

    lesioned: tuple[int, ...]
    outputs: torch.Tensor
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    elapsed_s: float = 0.0


class LesionEditor:
    """Evaluates a model with a chosen set of units lesioned, one coalition at a time.

    Args:
        game: a :class:`~msa_core.games.LesionGame` whose objective is the raw output (Identity), so
            ``game(coalition)`` returns ``(1, n_inputs, *model_output)``.
        objectives: name -> objective applied to the raw outputs for display (e.g. per-class accuracy,
            per-language scores); ``None`` values are skipped.
        cache_size: number of recent lesion sets kept.
    """

    def __init__(self, game: LesionGame, objectives: Mapping[str, Objective | None] | None = None, cache_size: int = 64):
        self.game = game
        self.objectives = {name: obj for name, obj in (objectives or {}).items() if obj is not None}
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, ...], EditorOutput] = OrderedDict()
        self.intact = self.evaluate(())

    @property
    def n_units(self) -> int:
        """Number of units (players) that can be toggled."""
        return self.game.n_players

    @property
    def unit_labels(self) -> list[str]:
        """Labels of the units, ``"<layer>:<index>"``."""
        return list(self.game.unit_labels)

    def evaluate(self, lesioned: Iterable[int]) -> EditorOutput:
        """Raw outputs and scores with the units in ``lesioned`` lesioned (all others intact)."""
        key = tuple(sorted({int(i) for i in lesioned}))
        if key in self._cache:
            self._cache.move_to_end(key)
            hit = self._cache[key]
            return EditorOutput(hit.lesioned, hit.outputs, hit.scores, 0.0)
        started = time.perf_counter()
        row = coalition(self.n_units, key)
        with torch.no_grad():
            outputs = self.game(row)[0].detach().float().cpu()
            scores = {}
            for name, objective in self.objectives.items():
                try:
                    scores[name] = objective(outputs.unsqueeze(0))[0].detach().cpu()
                except Exception:  # an objective that does not fit these outputs is just not shown
                    continue
        result = EditorOutput(key, outputs, scores, time.perf_counter() - started)
        self._cache[key] = result
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result


# ---------------------------------------------------------------------------------------------- presets
def _ranking_values(values: Any) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return array.reshape(array.shape[0], -1).sum(1) if array.ndim > 1 else array


def top_k(values: Any, k: int) -> list[int]:
    """Indices of the ``k`` units with the largest values (a mode is ranked by its sum), largest first."""
    v = _ranking_values(values)
    k = max(0, min(int(k), len(v)))
    return [int(i) for i in np.argsort(-v, kind="stable")[:k]]


def bottom_k(values: Any, k: int) -> list[int]:
    """Indices of the ``k`` units with the smallest values, smallest first."""
    v = _ranking_values(values)
    k = max(0, min(int(k), len(v)))
    return [int(i) for i in np.argsort(v, kind="stable")[:k]]


# ---------------------------------------------------------------------------------------------- masks
def mask_to_json(unit_labels: Sequence[str], lesioned: Iterable[int], **meta: Any) -> str:
    """A lesion mask as JSON: ``{"unit_labels", "mask" (True = intact), "lesioned" (labels), **meta}``."""
    lesioned = sorted({int(i) for i in lesioned})
    mask = coalition(len(unit_labels), lesioned)[0].tolist()
    payload = {
        "format": "msa-lesion-mask/1",
        "unit_labels": list(unit_labels),
        "mask": mask,
        "lesioned": [unit_labels[i] for i in lesioned],
        **meta,
    }
    return json.dumps(payload, indent=2)


def mask_to_npz(unit_labels: Sequence[str], lesioned: Iterable[int], **meta: Any) -> bytes:
    """A lesion mask as ``.npz`` bytes: arrays ``mask`` (bool, True = intact), ``unit_labels``, ``meta_json``."""
    lesioned = sorted({int(i) for i in lesioned})
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mask=coalition(len(unit_labels), lesioned)[0].numpy(),
        unit_labels=np.asarray(list(unit_labels), dtype=str),
        meta_json=np.asarray(json.dumps(meta)),
    )
    return buffer.getvalue()


def load_mask(source: str | Path | bytes) -> tuple[list[str], list[int]]:
    """Read a mask written by :func:`mask_to_json` or :func:`mask_to_npz` (a path or the file's bytes).

    Returns ``(unit_labels, lesioned indices)``. Raises ValueError for anything else.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    try:
        if data[:2] == b"PK":
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                labels = [str(x) for x in arrays["unit_labels"]]
                mask = np.asarray(arrays["mask"], dtype=bool)
        else:
            payload = json.loads(data.decode("utf-8"))
            labels = [str(x) for x in payload["unit_labels"]]
            mask = np.asarray(payload["mask"], dtype=bool)
    except Exception as error:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(f"not a lesion mask (JSON or .npz written by the editor): {error}") from error
    if mask.shape != (len(labels),):
        raise ValueError(f"the mask has {mask.size} entries for {len(labels)} unit labels")
    return labels, [int(i) for i in np.nonzero(~mask)[0]]


# ---------------------------------------------------------------------------------------------- pruning
_ZERO_PRESERVING = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.ReLU6, nn.ELU, nn.Hardtanh, nn.Softsign,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Mish, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.CELU, nn.SELU, nn.Hardswish,
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _parent_and_name(model: nn.Module, path: str) -> tuple[nn.Module | None, str]:
    if "." not in path:
        return model, path
    parent_path, name = path.rsplit(".", 1)
    return resolve_module(model, parent_path), name


def _zero_output(model: nn.Module, path: str, channels: list[int], axis_last: bool) -> None:
    """Make the output entries ``channels`` of the module at ``path`` exactly zero by editing weights."""
    module = resolve_module(model, path)
    with torch.no_grad():
        if isinstance(module, nn.Linear) and axis_last:
            module.weight[channels] = 0
            if module.bias is not None:
                module.bias[channels] = 0
            return
        if isinstance(module, _CONV) and not axis_last:
            module.weight[channels] = 0
            if module.bias is not None:
                module.bias[channels] = 0
            return
        if isinstance(module, _CONV_T) and not axis_last:
            if module.groups != 1:
                raise PruneError(f"cannot prune grouped transposed convolution {path!r}")
            module.weight[:, channels] = 0
            if module.bias is not None:
                module.bias[channels] = 0
            return
        if isinstance(module, _NORM) and not axis_last and module.affine:
            module.weight[channels] = 0
            module.bias[channels] = 0
            return
        if isinstance(module, nn.Sequential) and len(module):
            last = str(len(module) - 1)
            _zero_output(model, f"{path}.{last}", channels, axis_last)
            return
        if isinstance(module, _ZERO_PRESERVING):
            parent, name = _parent_and_name(model, path)
            if isinstance(parent, nn.Sequential) and name.isdigit() and int(name) > 0:
                previous = path.rsplit(".", 1)[0] + f".{int(name) - 1}" if "." in path else str(int(name) - 1)
                _zero_output(model, previous, channels, axis_last)
                return
    raise PruneError(
        f"cannot write a zero lesion of layer {path!r} ({type(module).__name__}) into the weights; "
        "export the lesion mask instead and apply it with msa_core.lesion_hooks"
    )


def pruned_model(model: nn.Module, resolved: Sequence[ResolvedUnits], lesioned: Iterable[int]) -> nn.Module:
    """A deep copy of ``model`` whose weights implement the lesion of the units in ``lesioned``.

    ``resolved`` are the game's units (``LesionGame.resolved``), ``lesioned`` indices into the game's
    players. Zero lesions zero the weights (and biases) that produce the units: a Linear's rows, a
    convolution's output channels, a batch norm's scale and shift, looking through trailing activations
    that map 0 to 0. Skip lesions of router logits (experts) zero the router row and set its bias to
    ``-inf``. Mean lesions and units addressed at a module's input raise :class:`PruneError`.
    """
    pruned = copy.deepcopy(model).eval()
    lesioned = sorted({int(i) for i in lesioned})
    offset = 0
    for units in resolved:
        mine = [i - offset for i in lesioned if offset <= i < offset + units.n_units]
        offset += units.n_units
        if not mine:
            continue
        if units.spec.site != "output":
            raise PruneError(f"units of {units.spec.path!r} lie on the module's input: export the mask instead")
        g = units.spec.group_size
        entries = [u * g + j for u in mine for j in range(g)]
        ndim = len(units.activation_shape)
        axis_last = units.axis == ndim - 1
        if not axis_last and units.axis != 1:
            raise PruneError(f"units of {units.spec.path!r} lie on axis {units.axis}: export the mask instead")
        if units.lesion == "zero":
            _zero_output(pruned, units.spec.path, entries, axis_last)
        elif units.lesion == "skip":
            module = resolve_module(pruned, units.spec.path)
            if not (isinstance(module, nn.Linear) and module.bias is not None and axis_last):
                raise PruneError(f"a skip lesion can only be written into a Linear router with a bias, not {units.spec.path!r}")
            with torch.no_grad():
                module.weight[entries] = 0
                module.bias[entries] = float("-inf")
        else:
            raise PruneError(
                f"the {units.lesion!r} lesion of {units.spec.path!r} cannot be written into the weights "
                "(only zero and skip lesions can): export the lesion mask instead"
            )
    return pruned


def save_pruned(model: nn.Module, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors).

    The metadata records ``architecture`` (the class name) and ``config`` (``model.config`` when the
    model has one, as the built-in models do) so :func:`load_pruned` can rebuild it, plus ``metadata``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"architecture": type(model).__name__, "format": "msa-pruned/1"}
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        meta["config"] = json.dumps(config)
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    save_file(state, str(path), metadata=meta)
    return path


def pruned_bytes(model: nn.Module, *, metadata: Mapping[str, Any] | None = None) -> bytes:
    """:func:`save_pruned` into memory (for a download button)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = save_pruned(model, Path(tmp) / "model.safetensors", metadata=metadata)
        return target.read_bytes()


def load_pruned(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load weights written by :func:`save_pruned`.

    With ``model`` given, returns a copy of it with the saved weights. Otherwise the architecture is
    rebuilt from the metadata (the built-in architectures of :mod:`msa_core.zoo`).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{path} is not a safetensors file: {error}") from error
    if model is None:
        from .zoo.architectures import ARCHITECTURES

        name = meta.get("architecture")
        if name not in ARCHITECTURES or "config" not in meta:
            raise ValueError(
                f"{path} holds weights of a {name or 'unknown'} model: pass the model to load them into "
                f"(built-in architectures: {', '.join(sorted(ARCHITECTURES))})"
            )
        model = ARCHITECTURES[name](**json.loads(meta["config"]))
    else:
        model = copy.deepcopy(model)
    model.load_state_dict(state)
    return model.eval()


# ---------------------------------------------------------------------------------------------- lesion curves
def scalarise(values: torch.Tensor, intact: torch.Tensor, empty: torch.Tensor, how: str = "mean") -> np.ndarray:
    """One number per coalition for a curve: ``(c, *out) -> (c,)``.

    ``how``: "mean" (mean over outputs, e.g. mean per-class accuracy), an int index into the flat
    output, or "fidelity" (1 at the intact output, 0 at the all-lesioned one:
    ``1 - ||v - v(N)|| / ||v(empty) - v(N)||``, for image or other raw outputs).
    """
    flat = values.reshape(values.shape[0], -1).double()
    if how == "mean":
        return flat.mean(1).cpu().numpy()
    if how == "fidelity":
        ref = intact.reshape(1, -1).double()
        scale = float((empty.reshape(1, -1).double() - ref).norm()) or 1.0
        return (1.0 - (flat - ref).norm(dim=1) / scale).cpu().numpy()
    return flat[:, int(how)].cpu().numpy()


# ---------------------------------------------------------------------------------------------- throughput
def measure_throughput(game: Any, max_seconds: float = 0.3, max_coalitions: int = 256, seed: int = 0) -> float:
    """Evaluations per second of ``game`` on random coalitions: batches of 4, 8, 16, ... until about
    ``max_seconds`` have passed or ``max_coalitions`` were evaluated (the larger batches dominate)."""
    rng = np.random.default_rng(seed)
    n = int(game.n_players)
    done, batch, started = 0, 4, time.perf_counter()
    with torch.no_grad():
        while True:
            t0 = time.perf_counter()
            game(torch.from_numpy(rng.random((batch, n)) < 0.5))
            last = time.perf_counter() - t0
            done += batch
            if time.perf_counter() - started > max_seconds or done >= max_coalitions:
                return batch / max(last, 1e-9)
            batch *= 2
