"""Task batteries, the user's own text and greedy continuations for language-model subjects.

* :mod:`.battery`: the file format (YAML / JSON), :func:`load_battery`, :class:`TaskBattery`, :class:`BatteryError`.
* :mod:`.scoring`: token codecs and the :class:`TaskScores` objective (units x tasks modes).
* :mod:`.text`: :func:`attach_battery`, :func:`text_objective`, :func:`greedy_continuation`.
"""

from .battery import SCORES, BatteryError, Task, TaskBattery, TaskItem, battery_from_rows, load_battery, parse_battery
from .scoring import CharCodec, EncodedBattery, HFCodec, TaskScores, battery_objective, encode_battery
from .text import (
    Continuation,
    attach_battery,
    battery_of,
    greedy_continuation,
    max_positions,
    subject_codec,
    task_scores,
    task_scores_objective,
    text_objective,
)

__all__ = [
    "SCORES", "BatteryError", "battery_from_rows", "Task", "TaskBattery", "TaskItem", "load_battery", "parse_battery",
    "CharCodec", "EncodedBattery", "HFCodec", "TaskScores", "battery_objective", "encode_battery",
    "Continuation", "attach_battery", "battery_of", "greedy_continuation", "max_positions", "subject_codec",
    "task_scores", "task_scores_objective", "text_objective",
]
