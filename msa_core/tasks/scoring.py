"""Scoring a task battery: token codecs, the encoded battery and the :class:`TaskScores` objective.

Every item is tokenised as ``prompt tokens + answer tokens`` (the answer tokenised on its own and appended),
right-padded to the longest item with an attention mask, so a batch of coalitions x items is one forward pass
and padding never changes a real position (the models are causal). ``logits[:, t]`` predicts token ``t + 1``;
the answer's tokens are scored teacher-forced in that one pass:

* ``accuracy``: 1 when the argmax at every answer position is the answer's token (the greedy continuation
  of the prompt is the answer), else 0;
* ``logprob``: the mean over the answer's tokens of their log-probability.

A task's score is the mean over its items; the game value is the vector of task scores ``(n_tasks,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..objectives import Objective
from .battery import BatteryError, TaskBattery, load_battery

__all__ = ["HFCodec", "CharCodec", "EncodedBattery", "encode_battery", "TaskScores", "battery_objective"]


class HFCodec:
    """Token ids of prompts and answers with a Hugging Face tokenizer (special tokens only on prompts)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.eos_id = None if tokenizer.eos_token_id is None else int(tokenizer.eos_token_id)

    def encode_prompt(self, text: str) -> list[int]:
        """Prompt ids (with the tokenizer's BOS when it adds one)."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_answer(self, text: str) -> list[int]:
        """Answer ids, tokenised alone, without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens kept, so nothing silently disappears)."""
        return self.tokenizer.decode(list(ids))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """One display string per token id."""
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def as_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """Model inputs: ``{"input_ids", "attention_mask"}``."""
        return {"input_ids": ids, "attention_mask": mask}


class CharCodec:
    """The built-in moe-lm's characters: a prompt is ``BOS + chars``, an answer ``chars + EOS`` (so a battery
    item with an empty prompt scores a word exactly as the built-in per-language game does)."""

    def __init__(self, vocab: Sequence[str], max_len: int | None = None) -> None:
        from ..zoo.lm import BOS_ID, EOS_ID, PAD_ID

        self.vocab = [str(v) for v in vocab]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = PAD_ID, BOS_ID, EOS_ID
        self.max_len = max_len

    def _chars(self, text: str) -> list[int]:
        missing = sorted({c for c in text if c not in self.index})
        if missing:
            raise BatteryError(f"character(s) {''.join(missing)!r} are not in the model's vocabulary")
        return [self.index[c] for c in text]

    def encode_prompt(self, text: str) -> list[int]:
        """``[BOS, chars...]``."""
        return [self.bos_id, *self._chars(text)]

    def encode_answer(self, text: str) -> list[int]:
        """``[chars..., EOS]``."""
        return [*self._chars(text), self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids`` (specials shown by name)."""
        return "".join(self.vocab[int(i)] for i in ids)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """One string per token."""
        return [self.vocab[int(i)] for i in ids]

    def as_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """The model takes the token tensor alone."""
        return ids


@dataclass
class EncodedBattery:
    """A battery as tensors.

    Attributes:
        input_ids: int64 ``(n_items, T)`` prompt + answer, right-padded.
        attention_mask: int64 ``(n_items, T)``.
        answer_mask: bool ``(n_items, T)``: True at the answer's tokens.
        task_index: int64 ``(n_items,)`` the task of each item.
        item_labels: ``"task:item number"`` per item.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    task_index: torch.Tensor
    item_labels: list[str]


def encode_battery(battery: TaskBattery, codec: Any, max_length: int | None = None) -> EncodedBattery:
    """Tokenise every item; :class:`BatteryError` for an answer that tokenises to nothing, a prompt with no token
    (nothing to predict the answer's first token from), or an item longer than ``max_length`` tokens."""
    rows, answer_lengths, tasks, labels = [], [], [], []
    for t_index, task in enumerate(battery.tasks):
        for i_index, item in enumerate(task.items):
            at = f"task battery: task {task.name!r}, item {i_index + 1}"
            try:
                prompt, answer = codec.encode_prompt(item.prompt), codec.encode_answer(item.answer)
            except BatteryError as error:
                raise BatteryError(f"{at}: {error}") from None
            if not answer:
                raise BatteryError(f"{at}: the answer {item.answer!r} tokenises to nothing")
            if not prompt:
                raise BatteryError(f"{at}: the prompt {item.prompt!r} tokenises to nothing (the model needs at least one token)")
            if max_length is not None and len(prompt) + len(answer) > max_length:
                raise BatteryError(
                    f"{at}: prompt + answer are {len(prompt) + len(answer)} tokens, more than the model's {max_length}"
                )
            rows.append(prompt + answer)
            answer_lengths.append(len(answer))
            tasks.append(t_index)
            labels.append(f"{task.name}:{i_index + 1}")
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), codec.pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    answer_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (row, n_answer) in enumerate(zip(rows, answer_lengths)):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.int64)
        mask[r, : len(row)] = 1
        answer_mask[r, len(row) - n_answer : len(row)] = True
    return EncodedBattery(ids, mask, answer_mask, torch.tensor(tasks, dtype=torch.int64), labels)


class TaskScores(Objective):
    """Per-task scores of a battery: logits ``(c, n_items, T, vocab)`` -> ``(c, n_tasks)`` (float64). Additive
    over items (``index``: a slice of the items gives that slice's share).

    Attributes:
        battery: the :class:`TaskBattery`.
        encoded: its :class:`EncodedBattery`.
        inputs: the model inputs of the items (the game runs on these, not on the subject's own inputs).
        output_labels: the task names.
    """

    name = "tasks"
    additive = True
    output_kind = "tasks"

    def __init__(self, battery: TaskBattery, encoded: EncodedBattery, inputs: Any) -> None:
        self.battery = battery
        self.encoded = encoded
        self.inputs = inputs
        self.output_labels = battery.names
        n_items = encoded.input_ids.shape[0]
        # target slots: (item, position t) with logits[:, item, t] predicting the answer token at t + 1
        item, position = torch.nonzero(encoded.answer_mask[:, 1:], as_tuple=True)
        self._item, self._position = item, position
        self._target = encoded.input_ids[item, position + 1]
        self._n_answer = encoded.answer_mask.sum(1).to(torch.float64)  # (n_items,)
        is_accuracy = torch.tensor([t.score == "accuracy" for t in battery.tasks])
        self._item_is_accuracy = is_accuracy[encoded.task_index]
        onehot = torch.nn.functional.one_hot(encoded.task_index, len(battery.tasks)).to(torch.float64)
        self._weights = onehot / onehot.sum(0).clamp_min(1)  # (n_items, n_tasks): mean over a task's items
        self._n_items = n_items

    def __call__(self, outputs: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        items = torch.arange(self._n_items)[index]
        if outputs.ndim != 4 or outputs.shape[1] != items.numel() or outputs.shape[2] != self.encoded.input_ids.shape[1]:
            raise ValueError(
                f"task scores need logits (coalitions, {items.numel()}, {self.encoded.input_ids.shape[1]}, vocab); "
                f"got {tuple(outputs.shape)}"
            )
        device = outputs.device
        start = int(items[0]) if items.numel() else 0
        keep = (self._item >= start) & (self._item < start + items.numel())
        local = (self._item[keep] - start).to(device)
        position, target = self._position[keep].to(device), self._target[keep].to(device)
        picked = outputs[:, local, position, :]  # (c, K, vocab): only the answer slots
        logp = picked.to(torch.float64).log_softmax(-1).gather(-1, target.view(1, -1, 1).expand(picked.shape[0], -1, 1))[..., 0]
        correct = (picked.argmax(-1) == target).to(torch.float64)
        c, n = outputs.shape[0], items.numel()
        logp_sum = torch.zeros((c, n), dtype=torch.float64, device=device).index_add_(1, local, logp)
        hits = torch.zeros((c, n), dtype=torch.float64, device=device).index_add_(1, local, correct)
        n_answer = self._n_answer[items].to(device)
        accuracy = (hits == n_answer).to(torch.float64)
        mean_logp = logp_sum / n_answer
        per_item = torch.where(self._item_is_accuracy[items].to(device), accuracy, mean_logp)
        return per_item @ self._weights[items].to(device)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "battery": self.battery.to_dict(), "sha256": self.battery.sha256()}


def battery_objective(battery: Any, codec: Any, *, device: str | torch.device = "cpu",
                      max_length: int | None = None) -> TaskScores:
    """:class:`TaskScores` for ``battery`` (a path, text, mapping or :class:`TaskBattery`) tokenised by ``codec``
    (:class:`HFCodec`, :class:`CharCodec`); its ``inputs`` lie on ``device``."""
    battery = load_battery(battery)
    encoded = encode_battery(battery, codec, max_length=max_length)
    inputs = codec.as_inputs(encoded.input_ids.to(device), encoded.attention_mask.to(device))
    return TaskScores(battery, encoded, inputs)
