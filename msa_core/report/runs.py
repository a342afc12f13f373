"""Budgets and run bookkeeping of the findings report: every number comes from a stored run.

Each analysis asks :class:`FindingsRuns` for a run with a :class:`~msa_core.runs.RunSpec`; it goes
through the one pipeline the app and CLI use (``RunSpec -> msa_core.runs.execute -> RunStore``), so a
rerun finds the stored runs, and the report prints next to each number the short id of its run. The
run ids of each section are written to ``<out_dir>/findings_runs.json`` and read back with
:func:`findings_runs` (the app's Findings page links each section to its runs with it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..runs import RunRecord, RunSpec, RunStore, execute, resolve

__all__ = ["SWEEP_WIDTHS", "Budget", "RunRef", "FindingsRuns", "findings_runs", "RUNS_FILE", "SECTIONS"]

RUNS_FILE = "findings_runs.json"
SWEEP_WIDTHS = (5, 10, 25, 50, 100, 200)
"""Hidden widths N of the Fashion-MNIST sweep (the paper sweeps 5..200)."""
SECTIONS = {
    "concentration": "1. Hub concentration in the Fashion-MNIST MLPs",
    "sweep": "1b. Concentration against the hidden width N",
    "lesion_curves": "2. Lesion curves",
    "estimators": "2b. Neuron Shapley's estimators",
    "interactions": "2c. Pairwise interactions",
    "moe": "3. Language-specific experts",
    "dcgan": "4. The DCGAN's layer-by-layer modes",
}
"""Section key -> heading (the keys of :func:`findings_runs`)."""


@dataclass(frozen=True)
class Budget:
    """Sampling budgets of one report run (all seeded)."""

    mlp_permutations: int = 1000
    sweep_permutations: int = 1000
    sweep_widths: tuple[int, ...] = SWEEP_WIDTHS
    se_draws: int = 400
    random_orders: int = 50
    interaction_units: int = 6
    interaction_permutations: int = 200
    neuron_shapley_permutations: int = 100
    dcgan_permutations: int = 24
    dcgan_clusters: int = 4
    moe_permutations: int | None = None  # None: exact values (256 coalitions); an int: permutation sampling
    seed: int = 0

    @staticmethod
    def quick() -> "Budget":
        """Tiny budgets for tests (seconds; the numbers are not meaningful)."""
        return Budget(
            mlp_permutations=2, sweep_permutations=2, sweep_widths=(10, 200), se_draws=20, random_orders=3, interaction_units=3,
            interaction_permutations=3, neuron_shapley_permutations=3, dcgan_permutations=1, dcgan_clusters=2,
            moe_permutations=1,
        )


@dataclass(frozen=True)
class RunRef:
    """One stored run behind a report section.

    Attributes:
        section: section key (see :data:`SECTIONS`).
        label: what the run is in that section (e.g. ``"mlp-fashion-l1"`` or ``"l1, N=25"``).
        run_id: full run id (the store key); ``short_id`` its first 12 characters, as printed.
        spec: the run's :meth:`RunSpec.to_dict`.
        cached: whether it was found in the store instead of computed.
        seconds: wall time of ``execute`` (lookup or computation).
    """

    section: str
    label: str
    run_id: str
    spec: dict[str, Any]
    cached: bool
    seconds: float

    @property
    def short_id(self) -> str:
        return self.run_id[:12]


@dataclass
class FindingsRuns:
    """Executes the report's runs through ``execute`` on one store and remembers them by section."""

    store: RunStore
    refs: dict[str, list[RunRef]] = field(default_factory=dict)
    _games: dict[str, Any] = field(default_factory=dict)
    _resolved: dict[str, Any] = field(default_factory=dict)

    def run(self, section: str, label: str, spec: RunSpec) -> RunRecord:
        """The stored run of ``spec`` (computed once, then found); recorded under ``section``."""
        started = time.perf_counter()
        resolved = resolve(spec)
        record = execute(spec, self.store, resolved=resolved)
        self._resolved[record.id] = resolved
        ref = RunRef(section, label, record.id, spec.to_dict(), bool(record.params.get("cached")),
                     time.perf_counter() - started)
        self.refs.setdefault(section, []).append(ref)
        return record

    def note(self, section: str, record: RunRecord, label: str) -> None:
        """Record that ``section`` also uses ``record`` (found earlier by another section)."""
        self.refs.setdefault(section, []).append(
            RunRef(section, label, record.id, record.spec.to_dict(), True, 0.0)
        )

    def game(self, record: RunRecord) -> Any:
        """The lesion game of ``record``'s spec (the same subject, units, objective and lesion)."""
        if record.id not in self._games:
            resolved = self._resolved.get(record.id) or resolve(record.spec)
            self._games[record.id] = resolved.game()
        return self._games[record.id]

    def subject(self, record: RunRecord) -> Any:
        """The loaded subject of ``record``'s model."""
        resolved = self._resolved.get(record.id) or resolve(record.spec)
        self._resolved[record.id] = resolved
        return resolved.subject

    def counts(self) -> tuple[int, int]:
        """``(found in the store, all)`` over the distinct runs used."""
        distinct = {r.run_id: r for refs in self.refs.values() for r in refs}
        return sum(r.cached for r in distinct.values()), len(distinct)

    def write(self, path: Path) -> Path:
        """Write the run ids per section as JSON (see :func:`findings_runs`)."""
        data = {key: [asdict(r) | {"short_id": r.short_id} for r in refs] for key, refs in self.refs.items()}
        path.write_text(json.dumps({"sections": SECTIONS, "runs": data}, indent=1) + "\n", encoding="utf-8")
        return path


def findings_runs(path: str | Path = "docs") -> dict[str, list[dict[str, Any]]]:
    """The stored runs behind each section of a written report.

    Args:
        path: the report folder (holding ``findings_runs.json``) or the JSON file itself.

    Returns:
        ``{section key: [{"label", "run_id", "short_id", "spec", "cached", "seconds", "section"}, ...]}``
        in report order (keys and headings in :data:`SECTIONS`). ``run_id`` opens with
        ``RunStore().get(run_id)`` on the machine that ran the report (or after ``msa report`` here, which
        finds or recomputes the same ids). Empty dict when the report was not written.
    """
    file = Path(path)
    file = file / RUNS_FILE if file.is_dir() else file
    if not file.exists():
        return {}
    return json.loads(file.read_text(encoding="utf-8"))["runs"]
