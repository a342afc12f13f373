"""The user's own text and prompts: per-token scores of a text, greedy continuations under a lesion set,
and attaching a task battery to a language-model subject.

* :func:`text_objective`: log p of each token of a text given the tokens before it, outputs labelled
  ``"position:token"`` (the position keeps repeated tokens apart).
* :func:`greedy_continuation`: a prompt continued greedily for a few tokens, intact and lesioned side by side
  (both rows in one forward pass per generated token).
* :func:`subject_codec` / :func:`attach_battery`: the codec of a subject (its Hugging Face tokenizer, or the
  characters of the built-in ``moe-lm``) and a battery made the subject's default objective.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from ..lesion import forward, lesion_hooks, resolve_units
from ..models.lm_objectives import NextTokenLogProb
from .battery import BatteryError, TaskBattery, load_battery
from .scoring import CharCodec, HFCodec, TaskScores, battery_objective

__all__ = ["text_objective", "Continuation", "greedy_continuation", "task_scores", "subject_codec",
           "attach_battery", "max_positions", "battery_of", "task_scores_objective"]


def subject_codec(subject: Any) -> Any:
    """The token codec of a language-model subject: :class:`HFCodec` of its ``tokenizer``, :class:`CharCodec`
    for the built-in moe-lm; :class:`BatteryError` when the model has no tokenizer."""
    codec = getattr(subject, "codec", None)
    if codec is not None:
        return codec
    tokenizer = getattr(subject, "tokenizer", None)
    if tokenizer is not None:
        return HFCodec(tokenizer)
    if getattr(subject, "ref", None) == "moe-lm":
        import numpy as np

        from ..zoo import assets_dir

        with np.load(assets_dir() / "moe_lm_eval.npz", allow_pickle=False) as data:
            return CharCodec([str(v) for v in data["vocab"]])
    if hasattr(subject, "tokenizer"):  # a Hugging Face folder saved without its tokenizer
        raise BatteryError(
            f"model {getattr(subject, 'name', subject)!r} has no tokenizer: save one next to the model "
            "(tokenizer.save_pretrained(model_dir)) to score task batteries or text"
        )
    raise BatteryError(
        f"model {getattr(subject, 'name', subject)!r} has no tokenizer: task batteries and text need a language "
        "model with one (a Hugging Face folder with its tokenizer saved, or moe-lm)"
    )


def max_positions(model: torch.nn.Module) -> int | None:
    """Longest sequence the model takes (a Hugging Face config's ``n_positions`` / ``max_position_embeddings``,
    a learned position table), or None when unbounded or unknown."""
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    table = getattr(model, "pos_emb", None)
    return int(table.num_embeddings) if isinstance(table, torch.nn.Embedding) else None


def attach_battery(subject: Any, battery: Any) -> Any:
    """Make ``battery`` (path, text, mapping or :class:`TaskBattery`) the default objective ``"tasks"`` of
    ``subject`` (labels: the task names; output kind ``"tasks"``); returns the same subject.

    Raises:
        BatteryError: malformed battery, an answer that tokenises to nothing, a model without a tokenizer.
    """
    battery = load_battery(battery)
    codec = subject_codec(subject)
    built = battery_objective(battery, codec, device=subject.device, max_length=max_positions(subject.model))
    subject.objectives = {"tasks": lambda **_: built, **{k: v for k, v in subject.objectives.items() if k != "tasks"}}
    subject.default_objective = "tasks"
    subject.output_kind = "tasks"
    subject.battery = battery
    return subject


def text_objective(codec: Any, text: str, *, device: str | torch.device = "cpu") -> NextTokenLogProb:
    """Per-token log-probabilities of ``text``: game output ``(n_tokens - 1,)``, labelled ``"position:token"``
    for every predicted token (positions count from 0 at the first token, which is not predicted)."""
    if not isinstance(text, str) or not text:
        raise ValueError("the text to score is empty; type at least two tokens")
    ids = codec.encode_prompt(text)
    if isinstance(codec, CharCodec):
        ids = ids + [codec.eos_id]
    if len(ids) < 2:
        raise ValueError(f"the text {text!r} is a single token; nothing to predict")
    tokens = torch.tensor([ids], dtype=torch.int64)
    labels = [f"{position}:{token}" for position, token in enumerate(codec.token_strings(ids)) if position > 0]
    inputs = codec.as_inputs(tokens.to(device), torch.ones_like(tokens).to(device))
    objective = NextTokenLogProb(tokens, labels=labels, inputs=inputs)
    objective.name = "text log-prob"
    return objective


@dataclass
class Continuation:
    """A prompt continued greedily, intact and lesioned.

    Attributes:
        prompt: the prompt text.
        intact, lesioned: the continuations' text (the new tokens only).
        intact_ids, lesioned_ids: their token ids.
        lesioned_units: the player indices that were lesioned.
    """

    prompt: str
    intact: str
    lesioned: str
    intact_ids: list[int]
    lesioned_ids: list[int]
    lesioned_units: tuple[int, ...]


def _position_free(resolved: Sequence[Any]) -> list[Any]:
    """Mean replacements averaged over every axis but the units', so they fit a prompt of any length."""
    out = []
    for units in resolved:
        replacement = units.replacement
        if units.lesion == "mean" and isinstance(replacement, torch.Tensor) and replacement.ndim > 1:
            dims = [d for d in range(replacement.ndim) if d != units.axis]
            units = dataclasses.replace(units, replacement=replacement.mean(dims, keepdim=True))
        out.append(units)
    return out


def _until_eos(ids: list[int], eos: int | None) -> list[int]:
    """``ids`` up to and including the first end-of-sequence token (the model's text ends there)."""
    return ids[: ids.index(eos) + 1] if eos is not None and eos in ids else ids


def greedy_continuation(subject: Any, prompt: str, lesioned: Iterable[int] = (), *, units: Any = None,
                        lesion: Any = None, n_tokens: int = 8, game: Any = None) -> Continuation:
    """``prompt`` continued by ``n_tokens`` greedy (argmax) tokens, intact and with the players ``lesioned``
    (indices into the players of ``subject.game(units)``) lesioned; both in one batch per token.

    ``lesion`` as in :meth:`Subject.game` ("mean" uses each unit's mean over the subject's inputs and
    positions). Each row stops after its first end-of-sequence token. ``game``: a game of ``subject`` whose players (and mean replacements) to use instead of
    resolving ``units`` again (the Editor's game; a prefix-reusing one works too). Stops early at the model's
    longest sequence.
    """
    codec = subject_codec(subject)
    model = subject.model
    if game is not None:
        resolved = list(game.resolved)
    else:
        specs = subject.resolve_units(units)
        resolved, _ = resolve_units(model, specs, subject.inputs, lesion=lesion or subject.default_lesion)
    resolved = _position_free(resolved)
    n_players = sum(r.n_units for r in resolved)
    lesioned = tuple(sorted({int(i) for i in lesioned}))
    if lesioned and (lesioned[0] < 0 or lesioned[-1] >= n_players):
        raise IndexError(f"lesioned unit indices must lie in [0, {n_players}); got {list(lesioned)}")
    coalitions = torch.ones((2, n_players), dtype=torch.bool, device=subject.device)
    coalitions[1, list(lesioned)] = False
    offsets = [0]
    for r in resolved:
        offsets.append(offsets[-1] + r.n_units)
    masks = [coalitions[:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    ids = torch.tensor([codec.encode_prompt(prompt)] * 2, dtype=torch.int64, device=subject.device)
    if ids.shape[1] == 0:
        raise ValueError(f"the prompt {prompt!r} tokenises to nothing")
    limit = max_positions(model)
    steps = n_tokens if limit is None else max(0, min(n_tokens, limit - ids.shape[1]))
    start = ids.shape[1]
    with torch.no_grad(), lesion_hooks(resolved, masks, 1):
        for _ in range(steps):
            output = forward(model, codec.as_inputs(ids, torch.ones_like(ids)))
            logits = getattr(output, "logits", output)
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    new = [_until_eos(row, getattr(codec, "eos_id", None)) for row in ids[:, start:].cpu().tolist()]
    return Continuation(prompt, codec.decode(new[0]), codec.decode(new[1]), new[0], new[1], lesioned)


def task_scores(subject: Any, lesioned: Iterable[int] = (), *, units: Any = None, game: Any = None) -> dict[str, list]:
    """Per-task scores intact and with the players ``lesioned``, in one game call of two coalitions (for the
    Editor). ``game``: a game of ``subject`` with the ``"tasks"`` objective (built from ``units`` when None;
    pass it to reuse it across edits). Returns ``{"task": names, "intact": [...], "lesioned": [...]}``."""
    if game is None:
        if "tasks" not in subject.objectives:
            raise BatteryError(f"{subject.name} has no task battery; load it with load_subject(..., tasks=FILE)")
        game = subject.game(units=units, objective="tasks")
    lesioned = sorted({int(i) for i in lesioned})
    if lesioned and (lesioned[0] < 0 or lesioned[-1] >= game.n_players):
        raise IndexError(f"lesioned unit indices must lie in [0, {game.n_players}); got {lesioned}")
    rows = torch.ones((2, game.n_players), dtype=torch.bool)
    rows[1, lesioned] = False
    values = game(rows).detach().cpu().double()
    names = list(game.objective.output_labels or [str(i) for i in range(values.shape[1])])
    return {"task": names, "intact": values[0].tolist(), "lesioned": values[1].tolist()}


def battery_of(subject: Any) -> TaskBattery | None:
    """The battery attached to ``subject`` by :func:`attach_battery`, or None."""
    return getattr(subject, "battery", None)


def task_scores_objective(subject: Any) -> TaskScores | None:
    """The ``"tasks"`` objective of ``subject`` when it has one."""
    return subject.objective("tasks") if "tasks" in getattr(subject, "objectives", {}) else None
