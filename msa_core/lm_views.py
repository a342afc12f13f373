"""What the app's pages need for language models, without Streamlit: is a subject an LM, the objectives a
run can choose (a typed text becomes ``"text:<text>"``), the names of a run's outputs (tasks, tokens) and
the Editor's per-task scores and continuations in one call.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .figures import output_axis_title, output_names
from .tasks import BatteryError, greedy_continuation, subject_codec, task_scores

__all__ = ["is_language_model", "TEXT_PREFIX", "text_objective_name", "run_objectives", "run_output_names",
           "lm_edit"]

TEXT_PREFIX = "text:"
"""Objective name prefix of the user's own text: ``"text:<text>"`` scores each of its tokens."""


def is_language_model(subject: Any) -> bool:
    """True when ``subject`` has a token codec (a Hugging Face tokenizer, or the built-in moe-lm's characters),
    so task batteries, texts and continuations apply to it."""
    try:
        subject_codec(subject)
    except BatteryError:
        return False
    return True


def text_objective_name(text: str | None) -> str | None:
    """The objective name scoring ``text`` (None for no text or only whitespace)."""
    return TEXT_PREFIX + text if text and text.strip() else None


def run_objectives(subject: Any, text: str | None = None) -> list[str]:
    """Objectives the Run page offers: the subject's own (the bare ``"text"`` factory needs a text, so it is
    left out) plus ``"text:<text>"`` when the user typed one on the Model page."""
    names = [name for name in subject.objectives if name != "text"]
    typed = text_objective_name(text)
    if typed is not None and is_language_model(subject):
        names.append(typed)
    return names


def run_output_names(labels: Sequence[str] | None, n_outputs: int, kind: str | None,
                     objective: str | None) -> tuple[list[str], str]:
    """``(names, axis title)`` of a run's flat outputs: task names for a battery (axis ``"task"``), the
    ``"position:token"`` labels of a text as they are (they already keep positions apart), else
    :func:`msa_core.figures.output_names` (token outputs prefixed by their position)."""
    if kind == "tasks":
        return output_names(labels, n_outputs), "task"
    is_text = bool(objective) and objective.startswith(TEXT_PREFIX)
    names = output_names(labels, n_outputs, positional=kind == "tokens" and not is_text)
    return names, ("position:token" if is_text else output_axis_title(kind, labels))


def lm_edit(subject: Any, lesioned: Iterable[int], *, prompt: str | None = None, editor_game: Any = None,
            tasks_game: Any = None, n_tokens: int = 8) -> dict[str, Any]:
    """The Editor's language-model views for one lesion set (player indices of ``editor_game``).

    Returns ``{"tasks": {"task", "intact", "lesioned"} or None, "continuation": Continuation or None}``:
    per-task scores intact vs lesioned when ``tasks_game`` (a ``"tasks"`` game with the same players) is
    given, and the greedy continuation of ``prompt`` for ``n_tokens`` tokens both ways when a prompt is.
    """
    lesioned = sorted({int(i) for i in lesioned})
    scores = task_scores(subject, lesioned, game=tasks_game) if tasks_game is not None else None
    continuation = None
    if prompt is not None and prompt != "":
        continuation = greedy_continuation(subject, prompt, lesioned, game=editor_game, n_tokens=n_tokens)
    return {"tasks": scores, "continuation": continuation}
