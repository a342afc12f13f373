"""Sparse mixture-of-experts blocks of Hugging Face models made lesionable (Mixtral, Qwen2-MoE).

In transformers 5 a router computes its top-k *inside* its forward and returns ``(logits, scores, indices)``,
so replacing its logits with ``-inf`` from a hook would change nothing. Each sparse block (a ``gate`` router
and fused ``experts``, optionally Qwen2-MoE's ``shared_expert`` + ``shared_expert_gate``) is therefore
replaced by :class:`SkippableSparseMoe`: the same computation (same parameters, same state-dict keys, same
output when nothing is lesioned) routed through taps:

* ``"<block>.router_logits"`` ``(batch, seq, n_experts)``: lesioned with "skip" (-inf), an expert is
  removed; the softmax, the top-k and the renormalisation run over the remaining experts, as if the model
  had been built without it. A token whose experts are all removed gets a zero routed output.
* ``"<block>.shared_expert_scale"`` ``(batch, seq, 1)`` (Qwen2-MoE): the shared expert's sigmoid gate; one
  player, lesioned with "zero" (the shared expert's contribution removed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .files import Tap

__all__ = ["SkippableSparseMoe", "wrap_sparse_moe"]


class SkippableSparseMoe(nn.Module):
    """A sparse MoE block whose experts can be skipped by a hook on ``router_logits`` (and, with a shared
    expert, removed by zeroing ``shared_expert_scale``). Input and output ``(batch, seq, hidden)``."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.gate = block.gate
        self.experts = block.experts
        self.top_k = int(block.gate.top_k)
        self.num_experts = int(block.gate.num_experts)
        self.normalize = bool(getattr(block.gate, "norm_topk_prob", True))
        self.router_logits = Tap()
        shared = getattr(block, "shared_expert", None)
        if shared is not None:
            self.shared_expert = shared
            self.shared_expert_gate = block.shared_expert_gate
            self.shared_expert_scale = Tap()
        self.wrapped_class = type(block).__name__

    @property
    def has_shared_expert(self) -> bool:
        """True for blocks with a shared expert (Qwen2-MoE)."""
        return hasattr(self, "shared_expert_scale")

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
        out = self.experts(flat, top_index, top_value.to(flat.dtype))
        if self.has_shared_expert:
            scale = self.shared_expert_scale(F.sigmoid(self.shared_expert_gate(flat)).reshape(batch, seq, 1))
            out = out + scale.reshape(batch * seq, 1) * self.shared_expert(flat)
        return out.reshape(batch, seq, hidden)


def _is_sparse_moe(module: nn.Module) -> bool:
    children = set(dict(module.named_children()))
    gate = getattr(module, "gate", None)
    return (
        children in ({"gate", "experts"}, {"gate", "experts", "shared_expert", "shared_expert_gate"})
        and isinstance(getattr(gate, "weight", None), torch.Tensor)
        and hasattr(gate, "top_k")
        and hasattr(gate, "num_experts")
        and gate.weight.ndim == 2
        and gate.weight.shape[0] == gate.num_experts
    )


def wrap_sparse_moe(model: nn.Module) -> list[str]:
    """Replace every sparse MoE block in ``model`` by :class:`SkippableSparseMoe` (in place).

    Returns the paths of the wrapped blocks.
    """
    paths = [name for name, module in model.named_modules() if name and _is_sparse_moe(module)]
    for path in paths:
        parent_path, _, leaf = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, leaf, SkippableSparseMoe(getattr(parent, leaf)))
    return paths
