"""Objectives for language models (next-token logits ``(..., T, vocab)``, ``logits[:, t]`` predicts ``t + 1``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..objectives import Objective

__all__ = ["PerGroupScore", "NextTokenLogProb", "MeanLogLikelihood"]


def _next_token_log_probs(outputs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits ``(c, n, T, V)`` and tokens ``(n, T)`` -> log p(tokens[t + 1]) ``(c, n, T - 1)`` (float64)."""
    logp = outputs[..., :-1, :].to(torch.float64).log_softmax(-1)
    target = tokens[:, 1:].to(outputs.device)
    index = target.unsqueeze(0).unsqueeze(-1).expand(outputs.shape[0], -1, -1, 1)
    return logp.gather(-1, index).squeeze(-1)


class PerGroupScore(Objective):
    """Mean per-token log-likelihood of the inputs of each group (e.g. each language): game output ``(n_groups,)``.

    For each word, the mean over its ``length - 1`` predicted tokens (characters and EOS) of log p; then the
    mean over the words of each group. Additive over inputs (``index`` gives a slice's share).

    Args:
        tokens: int64 ``(n_inputs, T)``.
        lengths: int64 ``(n_inputs,)`` tokens per word including BOS and EOS.
        groups: int64 ``(n_inputs,)`` group index of each input.
        group_names: names of the groups (``n_groups`` of them).
    """

    name = "per-language score"
    additive = True
    output_kind = "languages"

    def __init__(self, tokens: Any, lengths: Any, groups: Any, group_names: Sequence[str]) -> None:
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
        groups = torch.as_tensor(groups, dtype=torch.int64)
        self.output_labels = [str(g) for g in group_names]
        onehot = torch.nn.functional.one_hot(groups, len(self.output_labels)).to(torch.float64)
        self.weights = onehot / onehot.sum(0).clamp_min(1)  # (n_inputs, n_groups)
        steps = torch.arange(self.tokens.shape[1] - 1)
        mask = (steps[None, :] < (self.lengths[:, None] - 1)).to(torch.float64)
        self.token_weights = mask / mask.sum(1, keepdim=True).clamp_min(1)  # (n_inputs, T - 1)

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        tokens = self.tokens[index]
        if outputs.shape[1] != tokens.shape[0] or outputs.shape[2] != tokens.shape[1]:
            raise ValueError(f"expected logits (coalitions, {tokens.shape[0]}, {tokens.shape[1]}, vocab); got {tuple(outputs.shape)}")
        logp = _next_token_log_probs(outputs, tokens)
        weights = self.token_weights[index].to(outputs.device)
        # where(): a -inf log-prob at a padded slot must not become NaN
        per_word = torch.where(weights > 0, logp, torch.zeros_like(logp)).mul(weights).sum(-1)  # (c, n)
        return per_word @ self.weights[index].to(outputs.device)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "groups": self.output_labels, "n_inputs": int(self.tokens.shape[0])}


class NextTokenLogProb(Objective):
    """log p of each next token: game output ``(n_inputs, T - 1)``; masked positions (padding) give 0.

    Args:
        tokens: int64 ``(n_inputs, T)``.
        mask: optional bool ``(n_inputs, T)`` (e.g. an attention mask); position ``t`` of the output counts
            when ``mask[:, t + 1]`` is set.
        labels: optional labels of the ``T - 1`` positions (e.g. the predicted characters).
        inputs: optional inputs the game must run on instead of the subject's (e.g. one word).
    """

    name = "token log-prob"
    output_kind = "tokens"

    def __init__(self, tokens: Any, mask: Any = None, labels: Sequence[str] | None = None, inputs: Any = None) -> None:
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        self.mask = None if mask is None else torch.as_tensor(mask).bool()[:, 1:]
        self.output_labels = None if labels is None else list(labels)
        self.inputs = inputs

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        logp = _next_token_log_probs(outputs, self.tokens[index])
        if self.mask is not None:
            logp = torch.where(self.mask[index].to(outputs.device), logp, torch.zeros_like(logp))
        if self.output_labels is not None and logp.shape[1] == 1:
            return logp[:, 0]  # one word: (c, T - 1), labelled by its characters
        return logp

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tokens": self.tokens.tolist()}


class MeanLogLikelihood(Objective):
    """Mean log p of the next tokens over all (unmasked) positions of all inputs: a scalar game. Additive."""

    name = "mean log-likelihood"
    additive = True

    def __init__(self, tokens: Any, mask: Any = None) -> None:
        self.tokens = torch.as_tensor(tokens, dtype=torch.int64)
        mask = torch.ones_like(self.tokens, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        weights = mask[:, 1:].to(torch.float64)
        self.weights = weights / weights.sum().clamp_min(1)

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        logp = _next_token_log_probs(outputs, self.tokens[index])
        weights = self.weights[index].to(outputs.device)
        return torch.where(weights > 0, logp, torch.zeros_like(logp)).mul(weights).sum((-1, -2))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n_inputs": int(self.tokens.shape[0])}
