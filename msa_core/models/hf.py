"""Hugging Face causal language models from a local directory (never the network).

Players:

* **MLP neurons**: the outputs of the MLP activations (``transformer.h.{i}.mlp.act`` for GPT-2,
  ``model.layers.{i}.mlp.act_fn`` for Llama-style models); plain module paths.
* **Attention heads**: the *input* of the attention output projection (``attn.c_proj``, ``self_attn.o_proj``,
  ...), where heads are concatenated, in groups of ``head_dim``; catalogued under the alias
  ``"<attention path>.heads"`` (e.g. ``"transformer.h.0.attn.heads"``), which :meth:`Subject.game` accepts.
* **MoE experts** (Mixtral and Qwen2-MoE sparse blocks): each block is replaced by
  :class:`~msa_core.models.hf_moe.SkippableSparseMoe` (same parameters and output); its experts are the
  ``"<block>.router_logits"`` tap, skipped (-inf), and Qwen2-MoE's shared expert is one more player,
  ``"<block>.shared_expert_scale"`` (its gate, zeroed).

Games: "token log-prob" (log p of each next token, ``(n_inputs, T - 1)``), "mean log-likelihood" (scalar),
"text:<your text>" (log p of each token of a text, labelled ``"position:token"``; needs a saved tokenizer) and,
with ``tasks=``, "tasks" (a task battery's per-task scores, the default objective then; see
:mod:`msa_core.tasks`).

Games of an :class:`HFSubject` reuse the prefix (:mod:`msa_core.models.prefix`): when every player sits at
decoder layer L or later, the hidden states entering layer L are computed once and each batch of coalitions
runs only layers L..; ``subject.game(..., prefix_reuse=False)`` (or ``subject.prefix_reuse = False``) runs
the full pass. Same values either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..games import LesionGame
from ..lesion import LayerInfo, UnitSpec, record_activations
from .hf_moe import SkippableSparseMoe, wrap_sparse_moe
from .lm_objectives import MeanLogLikelihood, NextTokenLogProb
from .subject import (
    ModelLoadError,
    SpecLayerInfo,
    Subject,
    catalogue,
    fingerprint,
    move_inputs,
    run_once,
)

__all__ = ["is_hf_dir", "load_hf_subject", "HFSubject", "SkippableSparseMoe", "wrap_sparse_moe", "DEFAULT_TEXTS"]

DEFAULT_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Shapley values share a game's worth among its players.",
    "Lesion a unit and see what the network can no longer do.",
    "Experts in a mixture each take some of the tokens.",
)
_ATTENTION_OUT = re.compile(r"^(?P<attn>.*\.(attn|self_attn|attention))\.(c_proj|o_proj|out_proj|dense)$")
_MLP_ACT = re.compile(r"^.*\.mlp\.(act|act_fn|activation)$")


def is_hf_dir(path: Path) -> bool:
    """True for a directory holding a Hugging Face ``config.json``."""
    return path.is_dir() and (path / "config.json").is_file()


def _load_tokenizer(directory: Path) -> Any:
    """The tokenizer saved in ``directory`` (pad token set to EOS when missing), or None when there is none."""
    if not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                          "tokenizer.model")):
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception:  # noqa: BLE001 - an unreadable tokenizer counts as none (random ids, no text games)
        return None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _default_inputs(tokenizer: Any, config: Any) -> dict[str, torch.Tensor]:
    """Token ids of a few default sentences with the tokenizer, else random ids (seed 0), ``(4, T)``."""
    max_positions = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 64) or 64)
    if tokenizer is not None and tokenizer.pad_token is not None:
        encoded = tokenizer(list(DEFAULT_TEXTS), return_tensors="pt", padding=True, truncation=True,
                            max_length=min(32, max_positions))
        if int(encoded["input_ids"].max()) < int(config.vocab_size):
            return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, int(config.vocab_size), (4, min(16, max_positions)), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _as_lm_inputs(inputs: Any) -> dict[str, torch.Tensor]:
    if isinstance(inputs, dict):
        if "input_ids" not in inputs:
            raise ModelLoadError(f"inputs for a language model need 'input_ids'; got keys {list(inputs)}")
        ids = inputs["input_ids"].long()
        mask = inputs.get("attention_mask")
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask.long()}
    if isinstance(inputs, tuple):
        inputs = inputs[0]
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 2 or inputs.dtype.is_floating_point:
        raise ModelLoadError(
            "inputs for a language model must be integer token ids (n_inputs, seq_len), e.g. an .npz with 'input_ids'"
        )
    ids = inputs.long()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _head_layers(model: nn.Module, inputs: Any, config: Any) -> list[SpecLayerInfo]:
    """Attention-head rows: one per attention output projection, recorded on its input."""
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not n_heads:
        return []
    head_dim = getattr(config, "head_dim", None) or (hidden // n_heads if hidden else None)
    if not head_dim:
        return []
    found = {name: module for name, module in model.named_modules() if _ATTENTION_OUT.match(name)}
    recorded, _ = record_activations(model, inputs, {name: (module, "input") for name, module in found.items()})
    shapes = {name: tuple(tensor.shape) for name, tensor in recorded.items()}
    rows = []
    for name in found:
        shape = shapes.get(name)
        if shape is None or len(shape) < 2 or shape[-1] % head_dim:
            continue
        alias = _ATTENTION_OUT.match(name)["attn"] + ".heads"
        spec = UnitSpec(path=name, axis=-1, site="input", group_size=int(head_dim), kind="head", label=alias)
        rows.append(SpecLayerInfo(
            path=alias, module_type=type(found[name]).__name__ + " input", output_shape=shape, unit_kind="head",
            n_units=shape[-1] // head_dim, axis=len(shape) - 1, extra={"module": name, "head_dim": int(head_dim)},
            spec=spec,
        ))
    return rows


def _layer_index(path: str) -> str:
    match = re.search(r"\.(\d+)\.", path)
    return match.group(1) if match else path


@dataclass(repr=False)
class HFSubject(Subject):
    """A :class:`Subject` of a Hugging Face causal LM: its ``tokenizer`` (or None) and prefix-reusing games.

    Attributes:
        tokenizer: the saved tokenizer, or None (then no text or task games).
        prefix_reuse: default of :meth:`game`'s ``prefix_reuse``.
        battery: the :class:`~msa_core.tasks.TaskBattery` given to ``load_subject(..., tasks=)``, or None.
    """

    tokenizer: Any = None
    prefix_reuse: bool = True
    battery: Any = None

    def game(self, units: Any = None, objective: Any = None, lesion: Any = None, batch_size: int | None = None,
             device: Any = None, prefix_reuse: bool | None = None, **objective_options: Any) -> LesionGame:
        """:meth:`Subject.game`, run on the decoder layers from the first one holding a player when
        ``prefix_reuse`` (None: ``self.prefix_reuse``) and the model allows it; same values as the full pass."""
        from .prefix import prefix_game

        game = super().game(units, objective, lesion, batch_size, device, **objective_options)
        if not (self.prefix_reuse if prefix_reuse is None else prefix_reuse):
            return game
        return prefix_game(game) or game


def _text_factory(tokenizer: Any, device: str) -> Any:
    def text_game(text: str | None = None, **_: Any) -> Any:
        """log p of each token of ``text`` (``(n_tokens - 1,)``, labelled ``"position:token"``)."""
        from ..tasks import HFCodec, text_objective

        if text is None:
            raise ValueError("give the text to score, e.g. objective='text:The cat sat on the mat.'")
        return text_objective(HFCodec(tokenizer), text, device=device)

    return text_game


def load_hf_subject(directory: Path, *, inputs: Any, device: str, tasks: Any = None) -> HFSubject:
    """Subject of the causal LM saved in ``directory`` (``save_pretrained``); inputs: token ids or defaults.

    ``tasks``: a task battery (path, text, mapping or :class:`~msa_core.tasks.TaskBattery`) made the default
    objective ``"tasks"``; :class:`~msa_core.tasks.BatteryError` (a :class:`ModelLoadError`) for a malformed
    battery, an answer that tokenises to nothing or a model saved without a tokenizer.
    """
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise ModelLoadError(
            f"{str(directory)!r} is a Hugging Face model but transformers is not installed; "
            "pip install 'msa-explorer[hf]' (or transformers)"
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(
            f"could not load a causal language model from {str(directory)!r} (local files only, no download): "
            f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        ) from None
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    wrapped = wrap_sparse_moe(model)
    model = model.to(device).eval()
    tokenizer = _load_tokenizer(directory)
    inputs = _as_lm_inputs(inputs) if inputs is not None else _default_inputs(tokenizer, config)
    inputs = move_inputs(inputs, device)
    run_once(model, inputs, f"the model in {str(directory)!r}")
    base_layers = catalogue(model, inputs, str(directory))
    gate_paths = {f"{p}.gate" for p in wrapped}
    tap_paths = {f"{p}.router_logits" for p in wrapped}
    layers: list[LayerInfo] = []
    experts: list[SpecLayerInfo] = []
    shared_paths = {f"{p}.shared_expert_scale" for p in wrapped}
    for layer in base_layers:
        if layer.path in gate_paths:
            continue
        if layer.path in shared_paths:
            spec = UnitSpec(path=layer.path, axis=-1, kind="expert", lesion="zero", label=layer.path)
            layer = SpecLayerInfo(path=layer.path, module_type="shared expert (gate)", output_shape=layer.output_shape,
                                  unit_kind="expert", n_units=1, axis=len(layer.output_shape) - 1,
                                  extra={"block": layer.path.rsplit(".", 1)[0], "shared": True}, spec=spec)
            experts.append(layer)
        if layer.path in tap_paths:
            spec = UnitSpec(path=layer.path, axis=-1, kind="expert", lesion="skip")
            layer = SpecLayerInfo(path=layer.path, module_type="experts (router logits)", output_shape=layer.output_shape,
                                  unit_kind="expert", n_units=layer.output_shape[-1], axis=len(layer.output_shape) - 1,
                                  extra={"block": layer.path.rsplit(".", 1)[0]}, spec=spec)
            experts.append(layer)
        layers.append(layer)
    heads = _head_layers(model, inputs, config)
    layers.extend(heads)
    neurons = [layer for layer in layers if _MLP_ACT.match(layer.path)]
    presets: dict[str, list[Any]] = {}
    for kind, rows in (("heads", heads), ("neurons", neurons), ("experts", experts)):
        for row in rows:
            presets.setdefault(f"layer {_layer_index(row.path)} {kind}", []).append(row.path)  # routed + shared
        if len(rows) > 1:
            presets[f"all {kind}"] = [row.path for row in rows]
    default = heads[:1] or neurons[:1] or layers[:1]
    default_paths = ([path for path in presets[f"layer {_layer_index(experts[0].path)} experts"]] if experts
                     else [row.path for row in default])
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    objectives = {
        "token log-prob": lambda **_: NextTokenLogProb(ids, mask),
        "mean log-likelihood": lambda **_: MeanLogLikelihood(ids, mask),
    }
    if tokenizer is not None:
        objectives["text"] = _text_factory(tokenizer, device)
    description = (
        f"Hugging Face {type(model).__name__} from {directory} ({sum(p.numel() for p in model.parameters()):,} "
        f"parameters); players: {len(heads)} attention layers of heads, {len(neurons)} MLP layers, "
        f"{len(experts)} MoE layers of experts (skipped, not zeroed)"
    )
    subject = HFSubject(
        ref=str(directory), name=directory.name, model=model, inputs=inputs, objectives=objectives,
        default_objective="token log-prob", layers=layers, default_units=default_paths,
        unit_presets=presets, output_kind="tokens", description=description,
        samples={"input_ids": ids[:4].cpu().numpy()}, fingerprint=fingerprint(model, inputs), device=device,
        tokenizer=tokenizer,
    )
    if tasks is not None:
        from ..tasks import attach_battery

        attach_battery(subject, tasks)
    return subject

