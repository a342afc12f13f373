"""Hugging Face causal language models from a local directory (never the network).

Players:

* **MLP neurons**: the outputs of the MLP activations (``transformer.h.{i}.mlp.act`` for GPT-2,
  ``model.layers.{i}.mlp.act_fn`` for Llama-style models); plain module paths.
* **Attention heads**: the *input* of the attention output projection (``attn.c_proj``, ``self_attn.o_proj``,
  ...), where heads are concatenated, in groups of ``head_dim``; catalogued under the alias
  ``"<attention path>.heads"`` (e.g. ``"transformer.h.0.attn.heads"``), which :meth:`Subject.game` accepts.
* **MoE experts** (Mixtral-style sparse blocks: a ``gate`` router and fused ``experts``): in transformers 5
  the router computes its top-k *inside* its forward and returns ``(logits, scores, indices)``, so replacing
  its logits with ``-inf`` from a hook would change nothing. Each such block is therefore replaced by
  :class:`SkippableSparseMoe`, which runs the same computation (same parameters, same state-dict keys, same
  output when nothing is lesioned) but routes through a :class:`~msa_core.models.files.Tap` at
  ``"<block>.router_logits"`` (shape ``(batch, seq, n_experts)``). Lesioning that tap with "skip" (-inf)
  removes the expert: the softmax, the top-k and the renormalisation then run over the remaining experts, as
  if the model had been built without it; a token whose experts are all removed gets a zero MoE output (the
  residual stream passes unchanged). Blocks with extra parts (shared experts) are left alone.

Games: "token log-prob" (log p of each next token, ``(n_inputs, T - 1)``) and "mean log-likelihood" (scalar).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..lesion import LayerInfo, UnitSpec, record_activations
from .files import Tap
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

__all__ = ["is_hf_dir", "load_hf_subject", "SkippableSparseMoe", "wrap_sparse_moe", "DEFAULT_TEXTS"]

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


class SkippableSparseMoe(nn.Module):
    """A Mixtral-style sparse MoE block whose experts can be skipped by a hook on ``router_logits``.

    Same parameters (``gate.weight``, ``experts.*``) and output as the block it wraps. Input and output
    ``(batch, seq, hidden)``.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.gate = block.gate
        self.experts = block.experts
        self.top_k = int(block.gate.top_k)
        self.num_experts = int(block.gate.num_experts)
        self.normalize = bool(getattr(block.gate, "norm_topk_prob", True))
        self.router_logits = Tap()
        self.wrapped_class = type(block).__name__

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(batch, seq, hidden)`` -> ``(batch, seq, hidden)``."""
        batch, seq, hidden = hidden_states.shape
        flat = hidden_states.reshape(-1, hidden)
        logits = F.linear(flat, self.gate.weight, getattr(self.gate, "bias", None))
        logits = self.router_logits(logits.reshape(batch, seq, -1)).reshape(batch * seq, -1).float()
        finite = torch.isfinite(logits)
        shift = torch.where(finite, logits, torch.full_like(logits, -torch.finfo(logits.dtype).max)).amax(-1, keepdim=True)
        exp = torch.where(finite, torch.exp(torch.where(finite, logits - shift, torch.zeros_like(logits))), torch.zeros_like(logits))
        probs = exp / exp.sum(-1, keepdim=True).clamp_min(torch.finfo(exp.dtype).tiny)
        top_value, top_index = probs.topk(self.top_k, dim=-1)
        if self.normalize:
            top_value = top_value / top_value.sum(-1, keepdim=True).clamp_min(torch.finfo(top_value.dtype).tiny)
        out = self.experts(flat, top_index, top_value)
        return out.reshape(batch, seq, hidden)


def _is_sparse_moe(module: nn.Module) -> bool:
    children = set(dict(module.named_children()))
    gate = getattr(module, "gate", None)
    return (
        children == {"gate", "experts"}
        and isinstance(getattr(gate, "weight", None), torch.Tensor)
        and hasattr(gate, "top_k")
        and hasattr(gate, "num_experts")
        and gate.weight.ndim == 2
        and gate.weight.shape[0] == gate.num_experts
    )


def wrap_sparse_moe(model: nn.Module) -> list[str]:
    """Replace every Mixtral-style sparse MoE block in ``model`` by :class:`SkippableSparseMoe` (in place).

    Returns the paths of the wrapped blocks.
    """
    paths = [name for name, module in model.named_modules() if name and _is_sparse_moe(module)]
    for path in paths:
        parent_path, _, leaf = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, leaf, SkippableSparseMoe(getattr(parent, leaf)))
    return paths


def _default_inputs(directory: Path, config: Any) -> dict[str, torch.Tensor]:
    """Token ids of a few default sentences if a tokenizer is saved, else random ids (seed 0), ``(4, T)``."""
    max_positions = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 64) or 64)
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        encoded = tokenizer(list(DEFAULT_TEXTS), return_tensors="pt", padding=True, truncation=True,
                            max_length=min(32, max_positions))
        if int(encoded["input_ids"].max()) < int(config.vocab_size):
            return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    except Exception:  # noqa: BLE001 - no tokenizer saved: random ids below
        pass
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


def load_hf_subject(directory: Path, *, inputs: Any, device: str) -> Subject:
    """Subject of the causal LM saved in ``directory`` (``save_pretrained``); inputs: token ids or defaults."""
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
    inputs = _as_lm_inputs(inputs) if inputs is not None else _default_inputs(directory, config)
    inputs = move_inputs(inputs, device)
    run_once(model, inputs, f"the model in {str(directory)!r}")
    base_layers = catalogue(model, inputs, str(directory))
    gate_paths = {f"{p}.gate" for p in wrapped}
    tap_paths = {f"{p}.router_logits" for p in wrapped}
    layers: list[LayerInfo] = []
    experts: list[SpecLayerInfo] = []
    for layer in base_layers:
        if layer.path in gate_paths:
            continue
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
            presets[f"layer {_layer_index(row.path)} {kind}"] = [row.path]
        if len(rows) > 1:
            presets[f"all {kind}"] = [row.path for row in rows]
    default = experts[:1] or heads[:1] or neurons[:1] or layers[:1]
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    objectives = {
        "token log-prob": lambda **_: NextTokenLogProb(ids, mask),
        "mean log-likelihood": lambda **_: MeanLogLikelihood(ids, mask),
    }
    description = (
        f"Hugging Face {type(model).__name__} from {directory} ({sum(p.numel() for p in model.parameters()):,} "
        f"parameters); players: {len(heads)} attention layers of heads, {len(neurons)} MLP layers, "
        f"{len(experts)} MoE layers of experts (skipped, not zeroed)"
    )
    return Subject(
        ref=str(directory), name=directory.name, model=model, inputs=inputs, objectives=objectives,
        default_objective="token log-prob", layers=layers, default_units=[row.path for row in default],
        unit_presets=presets, output_kind="tokens", description=description,
        samples={"input_ids": ids[:4].cpu().numpy()}, fingerprint=fingerprint(model, inputs), device=device,
    )

