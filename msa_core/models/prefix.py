"""Prefix reuse for Hugging Face decoder models: a lesion at layer L costs only the layers from L on.

When every player of a :class:`~msa_core.games.LesionGame` sits in decoder layer ``L`` or later (or in the
final norm / LM head), the hidden states entering layer ``L`` are the same for every coalition. They are
computed once per input, and each batch of coalitions runs only layers ``L..`` and the head.

How (no model-specific forward is re-implemented): one intact forward pass records, with forward pre-hooks,
the exact positional and keyword arguments each decoder layer from ``L`` on receives (the attention mask,
rotary ``position_embeddings``, ``position_ids``, ...; layers may get different masks, e.g. sliding windows).
:class:`DecoderSuffix` replays them: arguments with one row per input are repeated once per coalition, the
rest (broadcast rows, None, flags) pass as recorded. It holds the model's own top-level children under their
own names, so unit paths, hooks and state-dict keys are those of the model. The replay is checked against
the full forward pass when the game is built; a model it does not reproduce (to 1e-4) keeps the full pass.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

import torch
from torch import nn

from ..games import LesionGame, lesion_game

__all__ = ["DecoderSuffix", "decoder_layout", "player_start_layer", "prefix_game", "prefix_lesion_game"]


@dataclasses.dataclass
class DecoderLayout:
    """Where the parts of a decoder model lie: ``layers`` (path of the ModuleList), ``norm`` and ``head``."""

    layers: str
    n_layers: int
    norm: str
    head: str


def decoder_layout(model: nn.Module) -> DecoderLayout | None:
    """The :class:`DecoderLayout` of a Hugging Face causal LM (GPT-2: ``transformer.h`` / ``ln_f``; Llama,
    Mistral, Mixtral, Qwen2(-MoE): ``model.layers`` / ``model.norm``), or None for other models."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not n_layers or not isinstance(head, nn.Module):
        return None
    names = {module: name for name, module in model.named_modules()}
    lists = [name for name, module in model.named_modules() if isinstance(module, nn.ModuleList) and len(module) == n_layers]
    if not lists:
        return None
    layers = min(lists, key=lambda name: name.count("."))
    base = layers.rpartition(".")[0]
    base_module = model.get_submodule(base) if base else model
    norm = next((getattr(base_module, key) for key in ("ln_f", "norm", "final_layernorm", "final_layer_norm")
                 if isinstance(getattr(base_module, key, None), nn.Module)), None)
    if norm is None or head not in names:
        return None
    return DecoderLayout(layers=layers, n_layers=int(n_layers), norm=names[norm], head=names[head])


def player_start_layer(layout: DecoderLayout, paths: Sequence[str]) -> int | None:
    """The first decoder layer holding a player (``n_layers`` when all lie in the norm or head), or None when
    some player lies elsewhere (embeddings, or a module outside the decoder)."""
    starts = []
    for path in paths:
        if path.startswith(layout.layers + "."):
            index = path[len(layout.layers) + 1 :].split(".", 1)[0]
            if not index.isdigit():
                return None
            starts.append(int(index))
        elif any(path == p or path.startswith(p + ".") for p in (layout.norm, layout.head)):
            starts.append(layout.n_layers)
        else:
            return None
    return min(starts) if starts else None


def _repeat(value: Any, n_inputs: int, times: int) -> Any:
    """Tensors with one row per input repeated ``times`` (coalition-major); tuples/lists/dicts recursively."""
    if isinstance(value, torch.Tensor):
        # 1-D tensors (cache positions) are per position, never per input
        if value.ndim >= 2 and value.shape[0] == n_inputs and times > 1:
            return value.repeat(times, *([1] * (value.ndim - 1)))
        return value
    if isinstance(value, tuple):
        return tuple(_repeat(v, n_inputs, times) for v in value)
    if isinstance(value, list):
        return [_repeat(v, n_inputs, times) for v in value]
    if isinstance(value, dict):
        return {k: _repeat(v, n_inputs, times) for k, v in value.items()}
    return value


def _replayable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_replayable(v) for v in value)
    if isinstance(value, dict):
        return all(_replayable(v) for v in value.values())
    return False  # a cache or a flex-attention block mask: not replayed


class DecoderSuffix(nn.Module):
    """Decoder layers ``start..`` + final norm + LM head of ``model``, called on the hidden states entering
    layer ``start``: ``(n_coalitions * n_inputs, T, hidden)`` -> logits ``(n_coalitions * n_inputs, T, vocab)``.

    The model's top-level children are registered under their own names (shared, not copied).
    """

    def __init__(self, model: nn.Module, layout: DecoderLayout, start: int, recorded: list[tuple[tuple, dict]],
                 n_inputs: int) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.config = getattr(model, "config", None)
        self._layer_list = [model.get_submodule(f"{layout.layers}.{i}") for i in range(start, layout.n_layers)]
        self._norm = model.get_submodule(layout.norm)
        self._head = model.get_submodule(layout.head)
        self._recorded = recorded
        self._n_inputs = n_inputs
        self._expanded: tuple[int, list[tuple[tuple, dict]]] | None = None
        self.start = start

    def _arguments(self, times: int) -> list[tuple[tuple, dict]]:
        if self._expanded is None or self._expanded[0] != times:
            self._expanded = (times, [(_repeat(a, self._n_inputs, times), _repeat(k, self._n_inputs, times))
                                      for a, k in self._recorded])
        return self._expanded[1]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(c * n_inputs, T, hidden)`` -> logits ``(c * n_inputs, T, vocab)``."""
        times = hidden.shape[0] // self._n_inputs
        for layer, (args, kwargs) in zip(self._layer_list, self._arguments(times)):
            output = layer(hidden, *args, **kwargs)
            hidden = output[0] if isinstance(output, (tuple, list)) else output
        return self._head(self._norm(hidden))


def _record(model: nn.Module, layout: DecoderLayout, start: int, inputs: Any) -> tuple[torch.Tensor, list, Any] | None:
    """One intact pass: the hidden states entering layer ``start`` ``(n_inputs, T, hidden)``, the other arguments
    of layers ``start..`` and the model's output; None if they cannot be replayed."""
    from ..lesion import forward

    recorded: list[tuple[tuple, dict]] = []
    entering: list[torch.Tensor] = []
    handles = []

    def hook(module, args, kwargs):
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            kwargs = dict(kwargs)
            hidden, rest = kwargs.pop("hidden_states", None), ()
        if not entering:
            entering.append(hidden)
        recorded.append((rest, {k: v for k, v in kwargs.items() if k != "hidden_states"}))

    if start < layout.n_layers:
        modules = [model.get_submodule(f"{layout.layers}.{i}") for i in range(start, layout.n_layers)]
    else:
        modules = []
        handles.append(model.get_submodule(layout.norm).register_forward_pre_hook(
            lambda module, args: entering.append(args[0]) if not entering else None))
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        with torch.no_grad():
            output = forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not entering or not isinstance(entering[0], torch.Tensor) or len(recorded) != len(modules):
        return None
    if not all(_replayable(a) and _replayable(k) for a, k in recorded):
        return None
    return entering[0], recorded, output


def prefix_game(game: LesionGame, *, tolerance: float | None = None) -> LesionGame | None:
    """The same game as ``game`` (same players, objective, lesions, batch size) run on the decoder suffix from
    the first layer holding a player (its ``model`` is the :class:`DecoderSuffix`, its ``inputs`` the hidden
    states entering that layer, ``full_model`` the whole model), or None when that does not apply (not a Hugging Face decoder, a player
    in layer 0 or outside the decoder, arguments that cannot be replayed, or a replay that differs from the
    full forward pass by more than ``tolerance``: None means 1e-4 for float32/float64 logits, 2e-2 for
    half precision, where batch-shape-dependent kernels round differently)."""
    model = game.model
    layout = decoder_layout(model)
    if layout is None:
        return None
    start = player_start_layer(layout, [r.spec.path for r in game.resolved])
    if start is None or start == 0:
        return None
    recorded = _record(model, layout, start, game.inputs)
    if recorded is None:
        return None
    hidden, arguments, output = recorded
    suffix = DecoderSuffix(model, layout, start, arguments, game.n_inputs)
    with torch.no_grad():  # two coalitions' worth, so a wrongly repeated argument shows
        replayed = suffix(hidden.repeat(2, *([1] * (hidden.ndim - 1))))
    full = getattr(output, "logits", output)
    if tolerance is None:
        tolerance = 1e-4 if replayed.dtype in (torch.float32, torch.float64) else 2e-2
    full = full.repeat(2, *([1] * (full.ndim - 1))) if isinstance(full, torch.Tensor) else full
    if not isinstance(full, torch.Tensor) or full.shape != replayed.shape or not torch.allclose(
        replayed, full, atol=tolerance, rtol=tolerance
    ):
        warnings.warn(f"prefix reuse does not reproduce {type(model).__name__}'s forward pass; using the full pass")
        return None
    callables = {id(r.lesion): r.lesion for r in game.resolved if callable(r.lesion)}
    if len(callables) > 1:  # one game-level callable can stand for at most one
        return None
    callable_lesion = next(iter(callables.values()), None)
    specs = [dataclasses.replace(r.spec, lesion=r.lesion if isinstance(r.lesion, str) else None) for r in game.resolved]
    reused = lesion_game(suffix, specs, hidden, objective=game.objective, lesion=callable_lesion or "zero",
                         batch_size=game.batch_size, device=game.device, fast_paths=False)
    reused.path = f"prefix (layers {start}..{layout.n_layers - 1})"
    reused.prefix_start = start
    reused.full_model = model  # the whole model (e.g. to bake a lesion into its weights)
    return reused


def prefix_lesion_game(model: nn.Module, units: Any, inputs: Any, *, prefix_reuse: bool = True,
                       **options: Any) -> LesionGame:
    """:func:`~msa_core.games.lesion_game` with prefix reuse for Hugging Face decoder models (``prefix_reuse``
    True, the default) when it applies; same values as the full pass. ``options`` as for ``lesion_game``."""
    game = lesion_game(model, units, inputs, **options)
    if not prefix_reuse:
        return game
    return prefix_game(game) or game
