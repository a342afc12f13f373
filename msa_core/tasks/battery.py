"""Task batteries: a small YAML or JSON file of named tasks, each a list of (prompt, answer) items.

```yaml
tasks:
  - name: addition
    score: accuracy        # the greedy continuation equals the answer's tokens (teacher-forced); or: logprob
    items:
      - {prompt: "2 + 3 =", answer: " 5"}
  - name: german
    score: logprob         # mean log-probability of the answer's tokens given the prompt
    items:
      - {prompt: "Translate to German: house ->", answer: " Haus"}
```

:func:`load_battery` reads and validates one (from a path, the text of a file, a mapping or a
:class:`TaskBattery`); every problem is a :class:`BatteryError` naming the task, the item and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..models.subject import ModelLoadError

__all__ = ["BatteryError", "TaskItem", "Task", "TaskBattery", "load_battery", "parse_battery", "battery_from_rows",
           "SCORES"]

SCORES = ("accuracy", "logprob")
"""Score kinds of a task: exact match of the greedy continuation, or mean log-probability of the answer."""


class BatteryError(ModelLoadError):
    """A task battery that cannot be used (a :class:`ModelLoadError`, so a ``ValueError``); the one-line
    message names the task, the item and the problem."""


@dataclass(frozen=True)
class TaskItem:
    """One item: the model reads ``prompt`` and is scored on continuing it with ``answer``."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Task:
    """A named task: its score kind (one of :data:`SCORES`) and its items (at least one)."""

    name: str
    score: str
    items: tuple[TaskItem, ...]


@dataclass(frozen=True)
class TaskBattery:
    """An ordered set of tasks with distinct names; the game built on it has one output per task."""

    tasks: tuple[Task, ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        """Task names in order (the labels of the game's outputs)."""
        return [task.name for task in self.tasks]

    @property
    def n_items(self) -> int:
        """Items over all tasks."""
        return sum(len(task.items) for task in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        """The battery as the plain document a file holds (``{"tasks": [...]}``)."""
        return {
            "tasks": [
                {"name": t.name, "score": t.score, "items": [{"prompt": i.prompt, "answer": i.answer} for i in t.items]}
                for t in self.tasks
            ]
        }

    def to_yaml(self) -> str:
        """YAML text that :func:`load_battery` reads back to an equal battery."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=120)

    def to_json(self) -> str:
        """JSON text that :func:`load_battery` reads back to an equal battery."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def to_rows(self) -> list[dict[str, str]]:
        """One row per item ``{"task", "score", "prompt", "answer"}`` (an editable table; see :func:`battery_from_rows`)."""
        return [{"task": t.name, "score": t.score, "prompt": i.prompt, "answer": i.answer} for t in self.tasks for i in t.items]

    def sha256(self) -> str:
        """Hash of the content (names, scores, prompts, answers), independent of formatting and source."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskBattery) and self.tasks == other.tasks

    def __hash__(self) -> int:
        return hash(self.tasks)


def _read_text(text: str, source: str) -> Any:
    """YAML (a superset of JSON) when PyYAML imports, else JSON."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        yaml = None
    try:
        if yaml is not None:
            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as error:  # noqa: BLE001 - any syntax error is reported the same way
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BatteryError(f"task battery {source}: not valid YAML/JSON: {first}") from None


def load_battery(battery: Any) -> TaskBattery:
    """A validated :class:`TaskBattery` from a path (``.yaml``/``.yml``/``.json``), the text of such a file,
    a mapping ``{"tasks": [...]}``, a list of task mappings, or a battery (returned as is).

    Raises:
        BatteryError: missing file, syntax error, or a malformed task or item (the message says which).
    """
    if isinstance(battery, TaskBattery):
        return battery
    if isinstance(battery, Path) or (isinstance(battery, str) and "\n" not in battery and
                                     battery.strip().lower().endswith((".yaml", ".yml", ".json"))):
        path = Path(battery).expanduser()
        if not path.is_file():
            raise BatteryError(f"task battery file {str(path)!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BatteryError(f"task battery file {str(path)!r} cannot be read as UTF-8 text: {error}") from None
        return parse_battery(_read_text(text, repr(str(path))), source=str(path))
    if isinstance(battery, str):
        return parse_battery(_read_text(battery, "text"), source="text")
    return parse_battery(battery, source="")


def battery_from_rows(rows: Any) -> TaskBattery:
    """A battery from table rows ``{"task", "score", "prompt", "answer"}`` (a list of dicts or a DataFrame's
    ``to_dict("records")``), tasks in order of first appearance; blank rows are skipped. A task's score is
    that of its first row (``accuracy`` when blank). :class:`BatteryError` names the row of a problem."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    tasks: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, start=1):
        cells = {key: ("" if row.get(key) is None or row.get(key) != row.get(key) else row.get(key))  # NaN -> ""
                 for key in ("task", "score", "prompt", "answer")}
        if not any(str(value).strip() for value in cells.values()):
            continue
        name = str(cells["task"]).strip()
        if not name:
            raise BatteryError(f"task battery table: row {number} has no task name")
        task = tasks.setdefault(name, {"name": name, "score": str(cells["score"]).strip() or "accuracy", "items": []})
        if str(cells["score"]).strip() and str(cells["score"]).strip() != task["score"]:
            raise BatteryError(f"task battery table: row {number} gives task {name!r} the score {cells['score']!r} but "
                               f"an earlier row gave {task['score']!r}; one score per task")
        task["items"].append({"prompt": str(cells["prompt"]), "answer": str(cells["answer"])})
    return parse_battery({"tasks": list(tasks.values())}, source="table")


def _where(source: str) -> str:
    if source == "table":
        return "task battery table"
    return f"task battery {source!r}" if source and source != "text" else "task battery"


def parse_battery(document: Any, *, source: str = "") -> TaskBattery:
    """Validate a parsed document (``{"tasks": [...]}`` or a list of tasks) into a :class:`TaskBattery`."""
    where = _where(source)
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - {"tasks"})
        if unknown:
            raise BatteryError(f"{where}: unknown top-level key(s) {', '.join(map(repr, unknown))}; expected 'tasks'")
        document = document.get("tasks")
    if not isinstance(document, list) or not document:
        raise BatteryError(f"{where}: 'tasks' must be a non-empty list of tasks (each with name, score, items)")
    tasks: list[Task] = []
    seen: set[str] = set()
    for t_index, raw in enumerate(document):
        task = _parse_task(raw, t_index, where)
        if task.name in seen:
            raise BatteryError(f"{where}: task {t_index + 1} repeats the name {task.name!r}; task names must differ")
        seen.add(task.name)
        tasks.append(task)
    return TaskBattery(tasks=tuple(tasks), source=source)


def _parse_task(raw: Any, t_index: int, where: str) -> Task:
    label = f"task {t_index + 1}"
    if not isinstance(raw, Mapping):
        raise BatteryError(f"{where}: {label} must be a mapping with name, score and items; got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BatteryError(f"{where}: {label} needs a non-empty string 'name'")
    label = f"task {name!r}"
    unknown = sorted(set(raw) - {"name", "score", "items"})
    if unknown:
        raise BatteryError(f"{where}: {label} has unknown key(s) {', '.join(map(repr, unknown))}; expected name, score, items")
    score = raw.get("score", "accuracy")
    if score not in SCORES:
        raise BatteryError(f"{where}: {label} has score {score!r}; choose one of {', '.join(SCORES)}")
    items = raw.get("items")
    if not isinstance(items, list) or not items:
        raise BatteryError(f"{where}: {label} needs a non-empty list 'items' of {{prompt, answer}}")
    parsed = []
    for i_index, item in enumerate(items):
        at = f"{where}: {label}, item {i_index + 1}"
        if not isinstance(item, Mapping):
            raise BatteryError(f"{at} must be a mapping {{prompt: ..., answer: ...}}; got {type(item).__name__}")
        unknown = sorted(set(item) - {"prompt", "answer"})
        if unknown:
            raise BatteryError(f"{at} has unknown key(s) {', '.join(map(repr, unknown))}; expected prompt, answer")
        for key in ("prompt", "answer"):
            if key not in item:
                raise BatteryError(f"{at} has no {key!r}")
            if not isinstance(item[key], str):
                raise BatteryError(f"{at}: {key!r} must be a string (quote numbers); got {type(item[key]).__name__}")
        if item["answer"] == "":
            raise BatteryError(f"{at} has an empty answer")
        parsed.append(TaskItem(prompt=item["prompt"], answer=item["answer"]))
    return Task(name=name.strip(), score=score, items=tuple(parsed))
